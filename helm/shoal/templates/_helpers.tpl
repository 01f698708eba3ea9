{{/*
Names, labels and the cluster wiring (peers list, DNS names) shared by every template.
*/}}

{{/* Chart name, overridable. */}}
{{- define "shoal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: prefix of every resource. Kept to 50 characters so that pod names
(`<fullname>-<ordinal>`) and the StatefulSet's controller-revision labels stay within 63.
*/}}
{{- define "shoal.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "shoal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods: never change them after install (StatefulSet selectors are immutable). */}}
{{- define "shoal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shoal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "shoal.labels" -}}
helm.sh/chart: {{ include "shoal.chart" . }}
{{ include "shoal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The headless Service that gives every pod a stable DNS name. */}}
{{- define "shoal.headlessName" -}}
{{- printf "%s-headless" (include "shoal.fullname" .) }}
{{- end }}

{{/* DNS suffix shared by all pods: `<headless>.<namespace>.svc.<domain>`. */}}
{{- define "shoal.dnsSuffix" -}}
{{- printf "%s.%s.svc.%s" (include "shoal.headlessName" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/*
Static bootstrap list, `1=<pod-0 dns>:<internal>,2=<pod-1 dns>:<internal>,…`: node id = ordinal + 1,
one entry per replica. Every pod gets the same list.
*/}}
{{- define "shoal.peers" -}}
{{- $replicas := int .Values.replicaCount }}
{{- if lt $replicas 1 }}{{ fail "replicaCount must be at least 1" }}{{ end }}
{{- $full := include "shoal.fullname" . }}
{{- $suffix := include "shoal.dnsSuffix" . }}
{{- $port := int .Values.ports.internal }}
{{- $peers := list }}
{{- range $i := until $replicas }}
{{- $peers = append $peers (printf "%d=%s-%d.%s:%d" (add1 $i) $full $i $suffix $port) }}
{{- end }}
{{- join "," $peers }}
{{- end }}

{{- define "shoal.secretName" -}}
{{- default (include "shoal.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "shoal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shoal.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "shoal.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The secret key the ServiceMonitor authenticates with, or "" for none.
*/}}
{{- define "shoal.metricsSecretKey" -}}
{{- if .Values.serviceMonitor.secretKey }}
{{- .Values.serviceMonitor.secretKey }}
{{- else if and (not .Values.auth.existingSecret) .Values.auth.readOnlyApiKey }}
{{- .Values.auth.secretKeys.readOnlyApiKey }}
{{- else if and (not .Values.auth.existingSecret) (or .Values.auth.apiKey .Values.auth.generateApiKey) }}
{{- .Values.auth.secretKeys.apiKey }}
{{- end }}
{{- end }}

{{/*
One TOML scalar. Helm reads every number in values as a float, so whole numbers are written as
integers (shoal's integer keys refuse `256.0`); strings are quoted with Go escaping, which TOML
basic strings accept.
*/}}
{{- define "shoal.tomlValue" -}}
{{- $v := . }}
{{- if kindIs "string" $v }}{{ quote $v }}
{{- else if kindIs "bool" $v }}{{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) }}
{{- if eq (float64 (int64 $v)) (float64 $v) }}{{ int64 $v }}{{ else }}{{ $v }}{{ end }}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) }}{{ $v }}
{{- else }}{{ fail (printf "config values must be strings, numbers or booleans, got %s" (kindOf $v)) }}
{{- end }}
{{- end }}

{{/* The TOML file: the chart's fixed keys, then `.Values.config` in key order. */}}
{{- define "shoal.configToml" -}}
# Rendered by the shoal Helm chart from .Values.config. Flags and SHOAL_* environment variables
# (the chart sets listen, data_dir and the cluster settings that way) override this file.
{{- range $k, $v := .Values.config }}
{{- if has $k (list "listen" "data_dir" "node_id" "internal_listen" "advertise" "peers" "join" "cluster_secret" "api_key" "read_only_api_key") }}
{{- fail (printf "config.%s is set by the chart (ports, persistence, auth); do not set it in config" $k) }}
{{- end }}
{{ $k }} = {{ include "shoal.tomlValue" $v }}
{{- end }}
{{- end }}
