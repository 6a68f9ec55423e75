{{/* Names, labels and the pieces every workload shares. */}}

{{- define "esteira.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "esteira.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "esteira.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* A component's resource name: <fullname>-<component>, within 63 characters. */}}
{{- define "esteira.componentName" -}}
{{- printf "%s-%s" (include "esteira.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "esteira.selectorLabels" -}}
app.kubernetes.io/name: {{ include "esteira.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "esteira.labels" -}}
helm.sh/chart: {{ include "esteira.chart" .root }}
{{ include "esteira.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: esteira
{{- end }}

{{/* A component's image: its own full reference when set (skaffold sets them), else
<image.registry>/esteira-<component>:<image.tag or appVersion>. */}}
{{- define "esteira.image" -}}
{{- if .values.image }}
{{- .values.image }}
{{- else }}
{{- printf "%s/esteira-%s:%s" .root.Values.image.registry .component (default .root.Chart.AppVersion .root.Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Gates for objects whose kinds come from CRDs: the value, and the API in the cluster or
an explicit switch (offline renders cannot see the cluster). Each is "true" or empty. */}}
{{- define "esteira.kedaObjects" -}}
{{- if and (eq .Values.autoscaling.mode "keda") (or .Values.keda.enabled (.Capabilities.APIVersions.Has "keda.sh/v1alpha1")) }}true{{ end }}
{{- end }}

{{- define "esteira.monitoringApi" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- end }}

{{/* The Redis DSN the processes use. */}}
{{- define "esteira.redisUrl" -}}
{{- if .Values.redis.inChart.enabled }}
{{- printf "redis://%s:6379/0" (include "esteira.componentName" (dict "root" . "component" "redis")) }}
{{- else }}
{{- .Values.redis.url }}
{{- end }}
{{- end }}

{{/* The autoscaling signal of a pool, taken from the recording rule of the same name in
esteira.rules (_rules.tpl), so the KEDA trigger and the PrometheusRule never disagree. */}}
{{- define "esteira.demandQuery" -}}
{{- $rules := include "esteira.rules" .root | fromYaml }}
{{- range $group := $rules.groups }}
{{- range $rule := $group.rules }}
{{- if and (eq (default "" $rule.record) "esteira:worker_demand:ratio") (eq (index (default dict $rule.labels) "pool") $.pool) }}
{{- $rule.expr | trim | replace "\n" " " }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Fails the render when a pool's timeouts would let Kubernetes kill a job that could
still finish: job timeout < completion wait < grace period. */}}
{{- define "esteira.checkTimeouts" -}}
{{- $w := .values }}
{{- if not (lt (float64 $w.jobTimeoutSeconds) (float64 $w.jobCompletionWaitSeconds)) }}
{{- fail (printf "%s: jobTimeoutSeconds (%v) must be less than jobCompletionWaitSeconds (%v)" .key $w.jobTimeoutSeconds $w.jobCompletionWaitSeconds) }}
{{- end }}
{{- if not (lt (float64 $w.jobCompletionWaitSeconds) (float64 $w.terminationGracePeriodSeconds)) }}
{{- fail (printf "%s: jobCompletionWaitSeconds (%v) must be less than terminationGracePeriodSeconds (%v)" .key $w.jobCompletionWaitSeconds $w.terminationGracePeriodSeconds) }}
{{- end }}
{{- if and (hasKey $w "hardLimitSeconds") (not (lt (float64 $w.hardLimitSeconds) (float64 $w.jobTimeoutSeconds))) }}
{{- fail (printf "%s: hardLimitSeconds (%v) must be less than jobTimeoutSeconds (%v)" .key $w.hardLimitSeconds $w.jobTimeoutSeconds) }}
{{- end }}
{{- end }}

{{/* Fails the render when an autoscaler's bounds are upside down (Kubernetes would refuse
the HPA, and KEDA would keep a pool at its maximum). */}}
{{- define "esteira.checkReplicas" -}}
{{- if gt (int .values.minReplicas) (int .values.maxReplicas) }}
{{- fail (printf "%s: minReplicas (%v) must not exceed maxReplicas (%v)" .key .values.minReplicas .values.maxReplicas) }}
{{- end }}
{{- end }}

{{/* The TCP port of a URL: `override` when set (not 0), else the URL's own, else `default`. */}}
{{- define "esteira.urlPort" -}}
{{- if .override }}
{{- .override }}
{{- else }}
{{- $host := (urlParse .url).host }}
{{- $port := regexFind ":[0-9]+$" $host | trimPrefix ":" }}
{{- default (toString .default) $port }}
{{- end }}
{{- end }}

{{/* The ConfigMap holding the portal profile: the user's, or the chart's (from portal.profile);
empty when there is none. */}}
{{- define "esteira.portalProfile" -}}
{{- if .Values.portal.profileConfigMap }}
{{- .Values.portal.profileConfigMap }}
{{- else if .Values.portal.profile }}
{{- include "esteira.fullname" . }}-portal-profile
{{- end }}
{{- end }}

{{/* The ConfigMap holding the ruptura source profile: the user's, or the chart's (from
rupturaSource.profile); empty when there is none. Fails when only one of a URL and a profile is
given (the processes would refuse to start). */}}
{{- define "esteira.rupturaSourceProfile" -}}
{{- $s := .Values.rupturaSource }}
{{- $url := or $s.url $s.urlSecret }}
{{- $profile := or $s.profileConfigMap $s.profile }}
{{- if and $url (not $profile) }}
{{- fail "rupturaSource: a URL needs a profile (rupturaSource.profile or profileConfigMap)" }}
{{- end }}
{{- if and $profile (not $url) }}
{{- fail "rupturaSource: a profile needs the database's URL (rupturaSource.url or urlSecret)" }}
{{- end }}
{{- if $s.profileConfigMap }}
{{- $s.profileConfigMap }}
{{- else if $s.profile }}
{{- include "esteira.fullname" . }}-ruptura-source
{{- end }}
{{- end }}
