{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "dts-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it already contains the chart name. */}}
{{- define "dts-operator.fullname" -}}
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

{{- define "dts-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dts-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dts-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dts-operator.labels" -}}
helm.sh/chart: {{ include "dts-operator.chart" . }}
{{ include "dts-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: dts-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dts-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dts-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dts-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* Fail early on combinations that cannot work. */}}
{{- define "dts-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 requires leaderElection.enabled=true: without a Lease every replica would call DTS" }}
{{- end }}
{{- if not (has .Values.dts.signatureVersion (list "hmac-sha1" "acs3-hmac-sha256")) }}
{{- fail "dts.signatureVersion must be hmac-sha1 or acs3-hmac-sha256" }}
{{- end }}
{{- if and .Values.rrsa.enabled (not .Values.defaultCredentials.secretName) (or (not .Values.rrsa.roleArn) (and (not .Values.rrsa.webhookInjection) (not .Values.rrsa.oidcProviderArn))) }}
{{- fail "rrsa.enabled needs rrsa.roleArn and (without rrsa.webhookInjection) rrsa.oidcProviderArn" }}
{{- end }}
{{- if not (has .Values.log.format (list "json" "text")) }}
{{- fail "log.format must be json or text" }}
{{- end }}
{{- end }}
