{{/* One Deployment, ServiceAccount and Service per component, from one definition: the three
components differ only in what the caller passes (`values`, port, probes, env, volumes). */}}

{{/* Environment from Secrets: Redis (and Sentinel) and database passwords for every component; the portal
account, the ruptura source's URL and password and the API keys for those that ask (`portal`,
`rupturaSource`, `apiKeys`). */}}
{{- define "esteira.secretEnv" -}}
{{- $v := .root.Values }}
{{- with $v.redis.existingSecret }}
- name: ESTEIRA_REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.redis.passwordKey }}}
{{- end }}
{{- if and $v.redis.sentinels $v.redis.sentinelExistingSecret }}
- name: ESTEIRA_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $v.redis.sentinelExistingSecret }}, key: {{ $v.redis.sentinelPasswordKey }}}
{{- end }}
{{- with $v.database.urlSecret }}
- name: ESTEIRA_DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.database.urlKey }}}
{{- end }}
{{- with $v.database.existingSecret }}
- name: ESTEIRA_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.database.passwordKey }}}
{{- end }}
{{- if and .portal $v.portal.existingSecret }}
- name: ESTEIRA_PORTAL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $v.portal.existingSecret }}, key: {{ $v.portal.usernameKey }}}
- name: ESTEIRA_PORTAL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $v.portal.existingSecret }}, key: {{ $v.portal.passwordKey }}}
{{- end }}
{{- if .rupturaSource }}
{{- with $v.rupturaSource.urlSecret }}
- name: ESTEIRA_RUPTURA_SOURCE_URL
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.rupturaSource.urlKey }}}
{{- end }}
{{- with $v.rupturaSource.existingSecret }}
- name: ESTEIRA_RUPTURA_SOURCE_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: {{ $v.rupturaSource.passwordKey }}}
{{- end }}
{{- end }}
{{- if and .apiKeys $v.auth.existingSecret }}
- name: ESTEIRA_API_KEYS
  valueFrom:
    secretKeyRef: {name: {{ $v.auth.existingSecret }}, key: {{ $v.auth.apiKeysKey }}}
{{- end }}
{{- end }}

{{/* The mounts of every Esteira container: /tmp, the CA bundles, the portal and ruptura source
profiles when configured, and extraVolumeMounts. */}}
{{- define "esteira.volumeMounts" -}}
- {name: tmp, mountPath: /tmp}
{{- if .Values.redis.tls.caSecret }}
- {name: redis-ca, mountPath: /etc/esteira/redis-ca, readOnly: true}
{{- end }}
{{- if .Values.database.tls.caSecret }}
- {name: database-ca, mountPath: /etc/esteira/database-ca, readOnly: true}
{{- end }}
{{- if include "esteira.portalProfile" . }}
- {name: portal-profile, mountPath: /etc/esteira/portal, readOnly: true}
{{- end }}
{{- if include "esteira.rupturaSourceProfile" . }}
- {name: ruptura-source, mountPath: /etc/esteira/ruptura-source, readOnly: true}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "esteira.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* A component's workload. Arguments: root, component, values (its values block), port and
portName, livenessPath and readinessPath, env (a map of ESTEIRA_* for it alone), portal,
rupturaSource and apiKeys (secrets it needs), replicas (omitted when an autoscaler owns them), tmpSizeLimit,
initContainers (a list). */}}
{{- define "esteira.workload" -}}
{{- $root := .root }}
{{- $v := .values }}
{{- $ctx := dict "root" $root "component" .component }}
{{- $image := include "esteira.image" (dict "root" $root "component" .component "values" $v) }}
{{- $name := include "esteira.componentName" $ctx }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $name }}
  labels:
    {{- include "esteira.labels" $ctx | nindent 4 }}
  {{- with $root.Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "esteira.labels" $ctx | nindent 4 }}
spec:
  type: {{ .serviceType | default "ClusterIP" }}
  selector:
    {{- include "esteira.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: {{ .portName }}
      port: {{ .servicePort | default .port }}
      targetPort: {{ .portName }}
      protocol: TCP
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "esteira.labels" $ctx | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .replicas) }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "esteira.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "esteira.selectorLabels" $ctx | nindent 8 }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        fsGroup: 10001
        seccompProfile:
          type: RuntimeDefault
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      {{- with .initContainers }}
      initContainers:
        {{- range . }}
        - name: {{ .name }}
          image: {{ $image }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: {{ toJson .command }}
          envFrom:
            - configMapRef:
                name: {{ include "esteira.fullname" $root }}-config
          {{- with include "esteira.secretEnv" (dict "root" $root) }}
          env:
            {{- . | nindent 12 }}
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "esteira.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "esteira.volumeMounts" $root | nindent 12 }}
        {{- end }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ $image }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: {{ .portName }}
              containerPort: {{ .port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "esteira.fullname" $root }}-config
          env:
            {{- range $key, $value := .env }}
            - name: {{ $key }}
              value: {{ $value | toString | quote }}
            {{- end }}
            {{- range $key, $value := $v.env }}
            - name: {{ $key }}
              value: {{ $value | toString | quote }}
            {{- end }}
            {{- include "esteira.secretEnv" (dict "root" $root "portal" .portal "rupturaSource" .rupturaSource "apiKeys" .apiKeys) | nindent 12 }}
          {{- with .preStopSleepSeconds }}
          lifecycle:
            # Keeps serving while the endpoint's removal reaches every node and ingress
            # controller; only then does SIGTERM start uvicorn's drain.
            preStop:
              exec:
                command: ["sleep", {{ . | toString | quote }}]
          {{- end }}
          startupProbe:
            httpGet: {path: {{ .livenessPath }}, port: {{ .portName }}}
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet: {path: {{ .livenessPath }}, port: {{ .portName }}}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: {{ .readinessPath }}, port: {{ .portName }}}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "esteira.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "esteira.volumeMounts" $root | nindent 12 }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ .tmpSizeLimit | default "256Mi" }}
        {{- with $root.Values.redis.tls.caSecret }}
        - name: redis-ca
          secret:
            secretName: {{ . }}
        {{- end }}
        {{- with $root.Values.database.tls.caSecret }}
        - name: database-ca
          secret:
            secretName: {{ . }}
        {{- end }}
        {{- with include "esteira.portalProfile" $root }}
        - name: portal-profile
          configMap:
            name: {{ . }}
        {{- end }}
        {{- with include "esteira.rupturaSourceProfile" $root }}
        - name: ruptura-source
          configMap:
            name: {{ . }}
        {{- end }}
        {{- with $root.Values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}

{{/* A PodDisruptionBudget for a component whose values have pdb.enabled. */}}
{{- define "esteira.pdb" -}}
{{- $ctx := dict "root" .root "component" .component }}
{{- if .values.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "esteira.componentName" $ctx }}
  labels:
    {{- include "esteira.labels" $ctx | nindent 4 }}
spec:
  {{- if hasKey .values.pdb "minAvailable" }}
  minAvailable: {{ .values.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .values.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "esteira.selectorLabels" $ctx | nindent 6 }}
{{- end }}
{{- end }}
