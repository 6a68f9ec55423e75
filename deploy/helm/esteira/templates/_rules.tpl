{{/* Esteira's recording and alerting rules, one set per release: every selector names the
release's namespace and its Services' jobs (a ServiceMonitor's `job` label is the Service's
name), so two releases, in one namespace or two, never read each other's queues. Every
recorded series and every alert carries `namespace` and `release` (the chart's fullname).
Gateways all report the same queue figures, so queue gauges are combined with max, never sum.
The PrometheusRule holds these rules; the KEDA triggers use the demand expressions verbatim
(esteira.demandQuery), so the trigger and the rule never disagree. Every expression uses only
the metric names of libs/core/esteira_core/metrics.py. */}}
{{- define "esteira.rules" -}}
{{- $ns := .Release.Namespace }}
{{- $release := include "esteira.fullname" . }}
{{- $gateway := printf "namespace=%q, job=%q" $ns (include "esteira.componentName" (dict "root" . "component" "api")) }}
{{- $workers := printf "namespace=%q, job=~%q" $ns (printf "%s-(ruptura|scraper)-worker" $release) }}
{{- $pools := list (dict "pool" "ruptura" "values" .Values.rupturaWorker) (dict "pool" "scraper" "values" .Values.scraperWorker) }}
groups:
  - name: esteira-autoscaling
    rules:
      {{- range $pools }}
      {{- $worker := printf "namespace=%q, job=%q" $ns (include "esteira.componentName" (dict "root" $ "component" (printf "%s-worker" .pool))) }}
      # Jobs of the {{ .pool }} pool waiting or running, per replica's capacity (its
      # concurrency): with a target of 1, desired replicas = ceil(value). A running job counts
      # once (the gateway's `ready` excludes what the workers report running). A pool at zero
      # replicas exports no capacity, so the configured concurrency stands in for it. No
      # gateway metrics, no value: KEDA then errors and holds its fallback replicas.
      - record: esteira:worker_demand:ratio
        labels:
          namespace: {{ $ns }}
          release: {{ $release }}
          pool: {{ .pool }}
        expr: >-
          sum(max by (state) (esteira_queue_jobs{ {{- $gateway }}, queue="arq:queue:{{ .pool }}", state=~"ready|in_progress"}))
          / scalar(max(esteira_worker_capacity{ {{- $worker }}, queue="arq:queue:{{ .pool }}"}) or vector({{ .values.concurrency }}))
      {{- end }}
      # Failed jobs per job finished; 0 (not absent) while jobs finish and none fail.
      - record: esteira:job_failure:ratio_10m
        labels:
          namespace: {{ $ns }}
          release: {{ $release }}
        expr: >-
          (sum by (queue) (rate(esteira_jobs_total{ {{- $workers }}, outcome="failure"}[10m]))
          or sum by (queue) (rate(esteira_jobs_total{ {{- $workers }}}[10m])) * 0)
          / sum by (queue) (rate(esteira_jobs_total{ {{- $workers }}}[10m]))

  - name: esteira-alerts
    rules:
      - alert: EsteiraOldestJobTooOld
        expr: max by (queue) (esteira_queue_oldest_ready_age_seconds{ {{- $gateway }}}) > 300
        for: 5m
        labels:
          severity: warning
          namespace: {{ $ns }}
          release: {{ $release }}
        annotations:
          summary: "{{`{{ $labels.queue }}`}}: a job has waited more than 5 minutes"
          description: "Workers are not keeping up, or none are running; check the pool's replicas."
      - alert: EsteiraInlineFallbackActive
        expr: min by (queue) (esteira_queue_mode{ {{- $gateway }}}) == 0
        for: 2m
        labels:
          severity: warning
          namespace: {{ $ns }}
          release: {{ $release }}
        annotations:
          summary: "{{`{{ $labels.queue }}`}}: the gateway is doing the queue's work itself"
          description: "Redis is down or no worker serves the queue; see GET /api/v1/queues."
      - alert: EsteiraJobFailureRatioHigh
        expr: esteira:job_failure:ratio_10m{namespace={{ $ns | quote }}, release={{ $release | quote }}} > 0.1
        for: 10m
        labels:
          severity: warning
          namespace: {{ $ns }}
          release: {{ $release }}
        annotations:
          summary: "{{`{{ $labels.queue }}`}}: more than 10% of jobs failed over 10 minutes"
          description: "Look at the workers' logs (job_id in every line) and at the portal."
      - alert: EsteiraNoWorkersWhileWorkWaits
        expr: >-
          max by (queue) (esteira_queue_jobs{ {{- $gateway }}, state="ready"}) > 0
          and on (queue)
          max by (queue) (label_replace(esteira_workers_online{ {{- $gateway }}}, "queue", "arq:queue:$1", "pool", "(.+)")) == 0
        for: 5m
        labels:
          severity: critical
          namespace: {{ $ns }}
          release: {{ $release }}
        annotations:
          summary: "{{`{{ $labels.queue }}`}}: jobs wait and no worker is online"
          description: "The pool is not scaling up; check KEDA/HPA and the worker pods."
      # Without the gateway's metrics the autoscaling signal is empty (KEDA holds its fallback
      # replicas) and no alert above can fire: this one says so. Its usual causes: the
      # ServiceMonitor not selected by Prometheus (monitoring.serviceMonitor.labels), a
      # NetworkPolicy that does not admit Prometheus (networkPolicy.metricsFrom), no gateway.
      - alert: EsteiraGatewayMetricsAbsent
        expr: absent(esteira_queue_mode{ {{- $gateway }}})
        for: 5m
        labels:
          severity: critical
          release: {{ $release }}
        annotations:
          summary: "{{ $ns }}/{{ $release }}: Prometheus has no metrics from the gateway"
          description: "Autoscaling runs on KEDA's fallback replicas and no other Esteira alert can fire. Check the ServiceMonitor's labels, networkPolicy.metricsFrom and the api pods."
      - alert: EsteiraMetricsTargetDown
        expr: up{namespace={{ $ns | quote }}, job=~{{ printf "%s-(api|ruptura-worker|scraper-worker)" $release | quote }}} == 0
        for: 5m
        labels:
          severity: warning
          release: {{ $release }}
        annotations:
          summary: "{{`{{ $labels.job }}`}} {{`{{ $labels.instance }}`}}: Prometheus cannot scrape it"
          description: "The pod is down, or a NetworkPolicy refuses Prometheus (networkPolicy.metricsFrom)."
{{- end }}
