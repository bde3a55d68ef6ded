{{/* Names and labels. */}}
{{- define "socd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "socd.fullname" -}}
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

{{- define "socd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "socd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "socd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "socd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: socd
{{- end -}}

{{- define "socd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "socd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "socd.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The pipeline's socd.yaml, as YAML. The chart's settings win over `config`: state_dir
is the mounted volume, the HTTP endpoint is on for the probes, and the custom rules
directory follows the configured rule paths.
*/}}
{{- define "socd.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if hasKey $config "state_dir" -}}
{{- fail "config.state_dir is set by the chart (/var/lib/socd, the state volume): remove it" -}}
{{- end -}}
{{- $http := deepCopy (default dict $config.http) -}}
{{- if and (hasKey $http "port") (ne (int $http.port) (int .Values.ports.http)) -}}
{{- fail "config.http.port differs from ports.http: set ports.http only (the probes and the Service use it)" -}}
{{- end -}}
{{- if and (hasKey $http "enabled") (not $http.enabled) -}}
{{- fail "config.http.enabled: false would leave the probes without /healthz and /readyz" -}}
{{- end -}}
{{- $_ := set $http "enabled" true -}}
{{- $_ := set $http "port" (int .Values.ports.http) -}}
{{- $_ := set $config "http" $http -}}
{{- $_ := set $config "state_dir" "/var/lib/socd" -}}
{{- $rules := deepCopy (default dict $config.rules) -}}
{{- $paths := default (list "builtin") $rules.paths -}}
{{- if and .Values.rules (not (has "/etc/socd/rules.d" $paths)) -}}
{{- $paths = append $paths "/etc/socd/rules.d" -}}
{{- end -}}
{{- $_ := set $rules "paths" $paths -}}
{{- $_ := set $config "rules" $rules -}}
{{- if .Values.cluster.enabled -}}
{{- $_ := set $config "cluster" (mergeOverwrite (deepCopy (default dict $config.cluster)) (fromYaml (include "socd.clusterConfig" .))) -}}
{{- else if hasKey $config "cluster" -}}
{{- fail "config.cluster is set but cluster.enabled is false: the chart runs one pipeline workload; set cluster.enabled=true (and the cluster.* values) for the Kafka mode" -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
The `cluster` section of socd.yaml in Kafka mode (docs/configuration.md, "cluster"),
from the cluster.* values. Keys of config.cluster that these values do not set are
kept (merged under it). The role is not here: each workload passes --role.
*/}}
{{- define "socd.clusterConfig" -}}
{{- $c := .Values.cluster -}}
{{- $kafka := dict "bootstrap_servers" $c.kafka.bootstrapServers -}}
{{- if $c.kafka.tls.enabled -}}
{{- $tls := dict -}}
{{- if $c.kafka.tls.existingSecret -}}
{{- $_ := set $tls "ca_file" (printf "/etc/socd/tls/kafka/%s" $c.kafka.tls.caKey) -}}
{{- if $c.kafka.tls.certKey -}}
{{- $_ := set $tls "cert_file" (printf "/etc/socd/tls/kafka/%s" $c.kafka.tls.certKey) -}}
{{- $_ := set $tls "key_file" (printf "/etc/socd/tls/kafka/%s" $c.kafka.tls.keyKey) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $kafka "tls" $tls -}}
{{- end -}}
{{- if $c.kafka.sasl.mechanism -}}
{{- $_ := set $kafka "sasl" (dict "mechanism" $c.kafka.sasl.mechanism "username" "${SOCD_KAFKA_USERNAME}" "password" "${SOCD_KAFKA_PASSWORD}") -}}
{{- end -}}
{{- toYaml (dict "kafka" $kafka "topic_prefix" $c.topicPrefix "partitions" (int $c.partitions) "replication_factor" (int $c.replicationFactor)) -}}
{{- end -}}

{{/* Kafka mode's values, checked before anything is rendered. */}}
{{- define "socd.checkCluster" -}}
{{- $c := .Values.cluster -}}
{{- if not $c.kafka.bootstrapServers -}}
{{- fail "cluster.enabled needs cluster.kafka.bootstrapServers (host:port of the Kafka brokers)" -}}
{{- end -}}
{{- if gt (int $c.worker.replicaCount) (int $c.partitions) -}}
{{- fail (printf "cluster.worker.replicaCount (%d) is more than cluster.partitions (%d): a partition is consumed by one worker, so the extra workers would only wait; lower the replicas, or create the topics with more partitions (docs/scaling.md, \"Sizing partitions\")" (int $c.worker.replicaCount) (int $c.partitions)) -}}
{{- end -}}
{{- if and .Values.persistence.enabled (ne .Values.kind "StatefulSet") -}}
{{- fail "persistence.enabled in Kafka mode needs kind: StatefulSet (one claim per intake and per worker pod; a Deployment's single ReadWriteOnce claim cannot be shared by two workloads)" -}}
{{- end -}}
{{- if and $c.kafka.sasl.mechanism (not $c.kafka.sasl.existingSecret) -}}
{{- fail "cluster.kafka.sasl.mechanism is set: name the Secret with the username and password in cluster.kafka.sasl.existingSecret" -}}
{{- end -}}
{{- if and $c.kafka.tls.existingSecret (not $c.kafka.tls.enabled) -}}
{{- fail "cluster.kafka.tls.existingSecret is set but cluster.kafka.tls.enabled is false" -}}
{{- end -}}
{{- if ne (empty $c.kafka.tls.certKey) (empty $c.kafka.tls.keyKey) -}}
{{- fail "cluster.kafka.tls: set both certKey and keyKey (mutual TLS) or neither" -}}
{{- end -}}
{{- range .Values.tlsSecrets -}}
{{- if and (eq .name "kafka") $c.kafka.tls.existingSecret -}}
{{- fail "tlsSecrets: the name \"kafka\" is used by cluster.kafka.tls (/etc/socd/tls/kafka): rename the entry" -}}
{{- end -}}
{{- end -}}
{{- if and $c.kafka.tls.certKey (not $c.kafka.tls.existingSecret) -}}
{{- fail "cluster.kafka.tls.certKey needs cluster.kafka.tls.existingSecret (the Secret holding the client certificate)" -}}
{{- end -}}
{{- end -}}

{{/*
The sensor's socd.yaml: the pipeline's configuration with the collectors replaced by
the sensor collector, then sensor.config. Its HTTP endpoint listens on the pod IP,
which on the host network is the node's address, on sensor.httpPort.
*/}}
{{- define "socd.sensorConfig" -}}
{{- $config := fromYaml (include "socd.config" .) -}}
{{- $collector := dict "type" "sensor" "interface" .Values.sensor.interface -}}
{{- if .Values.sensor.bpfFilter -}}
{{- $_ := set $collector "bpf_filter" .Values.sensor.bpfFilter -}}
{{- end -}}
{{- $_ := set $config "collectors" (dict "sensor" $collector) -}}
{{- $config = mergeOverwrite $config (deepCopy .Values.sensor.config) -}}
{{- $http := $config.http -}}
{{- $_ := set $http "enabled" true -}}
{{- $_ := set $http "host" "${SOCD_POD_IP}" -}}
{{- $_ := set $http "port" (int .Values.sensor.httpPort) -}}
{{- $_ := set $config "state_dir" "/var/lib/socd" -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Environment variables from `secrets` (secretKeyRef only) and extraEnv. */}}
{{- define "socd.env" -}}
- name: HOME
  value: /tmp
{{- range $group, $secret := .Values.secrets }}
{{- if $secret.existingSecret }}
{{- range $name, $key := $secret.env }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret.existingSecret }}
      key: {{ $key }}
      {{- if $secret.optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.cluster }}
{{- if and .enabled .kafka.sasl.mechanism .kafka.sasl.existingSecret }}
- name: SOCD_KAFKA_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .kafka.sasl.existingSecret }}
      key: {{ .kafka.sasl.usernameKey }}
- name: SOCD_KAFKA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .kafka.sasl.existingSecret }}
      key: {{ .kafka.sasl.passwordKey }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Fail when the configuration refers to ${NAME} (without a default) that no container
variable provides: socd would refuse to start.
*/}}
{{- define "socd.checkEnv" -}}
{{- $root := index . 0 -}}
{{- $text := index . 1 -}}
{{- $extra := index . 2 -}}
{{- $names := concat (list "HOME") $extra -}}
{{- range (include "socd.env" $root | fromYamlArray) -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- range (regexFindAll "\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}" $text -1) -}}
{{- $name := trimSuffix "}" (trimPrefix "${" .) -}}
{{- if not (has $name $names) -}}
{{- fail (printf "the configuration refers to ${%s} but no environment variable %s is set: add it to `secrets` (an existing Secret) or `extraEnv`" $name $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The volume holding socd.yaml, the custom rules and the TLS secrets. */}}
{{- define "socd.configVolume" -}}
- name: config
  projected:
    defaultMode: 0440
    sources:
      - configMap:
          name: {{ .configMap }}
          items:
            - key: socd.yaml
              path: socd.yaml
      {{- if .root.Values.rules }}
      - configMap:
          name: {{ include "socd.fullname" .root }}-rules
          items:
            {{- range $file, $_ := .root.Values.rules }}
            - key: {{ $file }}
              path: rules.d/{{ $file }}
            {{- end }}
      {{- end }}
      {{- with .root.Values.cluster }}
      {{- if and .enabled .kafka.tls.enabled .kafka.tls.existingSecret }}
      - secret:
          name: {{ .kafka.tls.existingSecret }}
          items:
            {{- range (compact (list .kafka.tls.caKey .kafka.tls.certKey .kafka.tls.keyKey)) }}
            - key: {{ . }}
              path: tls/kafka/{{ . }}
            {{- end }}
      {{- end }}
      {{- end }}
      {{- range .root.Values.tlsSecrets }}
      - secret:
          name: {{ .secretName }}
          items:
            {{- $name := .name }}
            {{- range .keys }}
            - key: {{ . }}
              path: tls/{{ $name }}/{{ . }}
            {{- end }}
      {{- end }}
{{- end -}}

{{/* Probes on the HTTP endpoint; the argument is (list root port). */}}
{{- define "socd.probes" -}}
{{- $root := index . 0 -}}
{{- $port := index . 1 -}}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ $port }}
  {{- toYaml $root.Values.probes.startup | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ $port }}
  {{- toYaml $root.Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ $port }}
  {{- toYaml $root.Values.probes.readiness | nindent 2 }}
{{- end -}}

{{- define "socd.terminationGrace" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- $drain := 30 -}}
{{- with .Values.config.pipeline -}}
{{- if hasKey . "drain_timeout_secs" -}}
{{- $drain = .drain_timeout_secs -}}
{{- end -}}
{{- end -}}
{{- add (ceil $drain | int) 30 -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}
