{{/* The chart name, or nameOverride. */}}
{{- define "surge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name for objects: fullnameOverride, the release name, or release-chart. */}}
{{- define "surge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "surge.agent.fullname" -}}
{{- printf "%s-agent" (include "surge.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "surge.aggregator.fullname" -}}
{{- printf "%s-aggregator" (include "surge.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "surge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "surge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "agent"). */}}
{{- define "surge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "surge.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "surge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The pod and container hardening shared by the agent and the aggregator. */}}
{{- define "surge.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "surge.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The namespace/name of the cert-manager Certificate the APIServices take their CA from. */}}
{{- define "surge.certificateRef" -}}
{{- printf "%s/%s" .Release.Namespace .Values.tls.secretName -}}
{{- end -}}

{{/*
The agent's config as deployed: agent.config, and with mTLS on: the client certificate (mounted by the
DaemonSet) on every HTTPS remote-write with a tls_config, instead of the bearer token (the aggregator
takes either, and a token it cannot review would be refused before the certificate is looked at).
*/}}
{{- define "surge.agent.config" -}}
{{- if .Values.mtls.enabled -}}
{{- $cfg := fromYaml .Values.agent.config -}}
{{- range $cfg.agent.remote_write -}}
{{- if and .tls_config (hasPrefix "https://" (toString .url)) -}}
{{- $_ := set .tls_config "cert_file" "/etc/surge/client-tls/tls.crt" -}}
{{- $_ := set .tls_config "key_file" "/etc/surge/client-tls/tls.key" -}}
{{- $_ := unset . "bearer_token_file" -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- else -}}
{{- .Values.agent.config -}}
{{- end -}}
{{- end -}}

{{/*
The aggregator's config as deployed: aggregator.config, and
- with mTLS on: client certificates verified against the client CA, required for writes and peer copies
  (they replace the token review), and the replica's own client certificate toward its peers instead of
  its token;
- with node decisions on: `aggregator.nodes` from nodeDecisions.settings, its NodePools file the mounted
  ConfigMap, and the headroom Deployment in the release namespace unless settings name another (the
  namespace the chart's Role grants).
*/}}
{{- define "surge.aggregator.config" -}}
{{- if or .Values.mtls.enabled .Values.nodeDecisions.enabled -}}
{{- $cfg := fromYaml .Values.aggregator.config -}}
{{- $agg := $cfg.aggregator -}}
{{- if .Values.mtls.enabled -}}
{{- $server := $agg.server | default dict -}}
{{- $tls := $server.tls | required "mtls.enabled needs aggregator.server.tls in aggregator.config" -}}
{{- $_ := set $tls "client_ca_file" "/etc/surge/client-tls/ca.crt" -}}
{{- $_ := set $server "auth" (dict "client_certificates" true) -}}
{{- with $agg.peers -}}
{{- $peerTls := .tls_config | default dict -}}
{{- $_ := set $peerTls "cert_file" "/etc/surge/client-tls/tls.crt" -}}
{{- $_ := set $peerTls "key_file" "/etc/surge/client-tls/tls.key" -}}
{{- $_ := set . "tls_config" $peerTls -}}
{{- $_ := unset . "bearer_token_file" -}}
{{- end -}}
{{- end -}}
{{- if .Values.nodeDecisions.enabled -}}
{{- $_ := .Values.nodeDecisions.nodePools | required "nodeDecisions.enabled needs nodeDecisions.nodePools (karpenter.sh/v1 NodePools)" -}}
{{- $nodes := deepCopy (.Values.nodeDecisions.settings | default dict) -}}
{{- $_ := set $nodes "node_pools_file" "/etc/surge/nodes/nodepools.yaml" -}}
{{- with $nodes.headroom -}}
{{- $_ := set . "namespace" (include "surge.headroomNamespace" $) -}}
{{- end -}}
{{- $_ := set $agg "nodes" $nodes -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- else -}}
{{- .Values.aggregator.config -}}
{{- end -}}
{{- end -}}

{{/* The namespace of the headroom pause Deployment: nodeDecisions.settings.headroom.namespace, else the
release namespace. */}}
{{- define "surge.headroomNamespace" -}}
{{- $h := (.Values.nodeDecisions.settings | default dict).headroom | default dict -}}
{{- $h.namespace | default .Release.Namespace -}}
{{- end -}}
