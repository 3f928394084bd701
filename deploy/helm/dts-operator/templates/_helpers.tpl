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

{{/* The Leases of the release, quoted and comma-separated: one per shard, or the one. */}}
{{- define "dts-operator.leaseNames" -}}
{{- if .Values.shards }}
{{- range $i, $s := .Values.shards }}{{ if $i }}, {{ end }}{{ printf "%s-%s" $.Values.leaderElection.leaseName $s.name | quote }}{{ end }}
{{- else }}
{{- .Values.leaderElection.leaseName | quote }}
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
{{- include "dts-operator.validateShards" . }}
{{- end }}

{{/*
Shards: what can be seen at render time to overlap. Two shards overlap when
their namespaces meet (none listed = every namespace the release watches)
and their selectors could select the same DtsJob: one of them is empty (it
selects everything) or both are the same text. Selectors that differ may
still overlap (shard=a and env=prod); disjointness is the user's to keep,
see the README's "Several shards".
*/}}
{{- define "dts-operator.validateShards" -}}
{{- $shards := .Values.shards | default list }}
{{- if and $shards .Values.selector }}
{{- fail "selector and shards are exclusive: with shards, give each shard its own selector" }}
{{- end }}
{{- $seen := dict }}
{{- range $i, $a := $shards }}
{{- if not $a.name }}
{{- fail (printf "shards[%d] needs a name (it names the Deployment and the Lease)" $i) }}
{{- end }}
{{- if hasKey $seen $a.name }}
{{- fail (printf "shards: the name %q is used twice; each shard needs its own name (and so its own Lease)" $a.name) }}
{{- end }}
{{- $_ := set $seen $a.name true }}
{{- if and $a.namespaces $.Values.watchNamespace }}
{{- fail (printf "shards[%d] (%s) lists namespaces, but watchNamespace is set: per-shard namespaces need watchNamespace \"\" (cluster-wide RBAC)" $i $a.name) }}
{{- end }}
{{- $replicas := hasKey $a "replicaCount" | ternary $a.replicaCount $.Values.replicaCount }}
{{- if and (gt (int $replicas) 1) (not $.Values.leaderElection.enabled) }}
{{- fail (printf "shards[%d] (%s): replicaCount > 1 requires leaderElection.enabled=true" $i $a.name) }}
{{- end }}
{{- range $j, $b := $shards }}
{{- if lt $i $j }}
{{- $sharedNamespace := or (not $a.namespaces) (not $b.namespaces) }}
{{- range $ns := $a.namespaces | default list }}
{{- if has $ns ($b.namespaces | default list) }}{{ $sharedNamespace = true }}{{ end }}
{{- end }}
{{- $sa := nospace ($a.selector | default "") }}
{{- $sb := nospace ($b.selector | default "") }}
{{- if and $sharedNamespace (or (not $sa) (not $sb) (eq $sa $sb)) }}
{{- $why := printf "have the same selector %q" ($a.selector | default "") }}
{{- if or (not $sa) (not $sb) }}{{ $why = "one of them has no selector (it selects every DtsJob)" }}{{ end }}
{{- fail (printf "shards %q and %q overlap: they share namespaces and %s, so a DtsJob would be handled by both. Give every shard a selector no other shard's matches (e.g. shard=a, shard=b, shard notin (a,b)) or disjoint namespaces" $a.name $b.name $why) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
