{{/*
Names. Every object is named after the release (as the seed's chart did:
release mnist gives mnist-ps, mnist-worker), cut so that the longest pod
hostname (<fullname>-worker-<run>-<index>) stays under 63 characters.
*/}}
{{- define "dtf.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "dtf.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "dtf.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The headless Service of a role: its pods' DNS subdomain. (dict "root" . "role" "ps") */}}
{{- define "dtf.service" -}}
{{- printf "%s-%s" (include "dtf.fullname" .root) .role -}}
{{- end -}}

{{/*
The workload actually used: job or statefulset. auto picks an indexed Job
where the cluster has them (stable in Kubernetes 1.24), a StatefulSet before.
*/}}
{{- define "dtf.workload" -}}
{{- if eq .Values.workload "auto" -}}
{{- if semverCompare ">=1.24-0" .Capabilities.KubeVersion.Version -}}job{{- else -}}statefulset{{- end -}}
{{- else -}}
{{- .Values.workload -}}
{{- end -}}
{{- end -}}

{{/*
The run id: 8 hex digits of a hash of everything the pods are made from (the
values, scripts included, the chart version and the workload). In job mode it
names the Jobs: a Job's pod template cannot be changed in place, so any change
of values makes new Jobs (and Helm deletes the old ones). It does not name the
checkpoint directory (dtf.checkpointDir): that is the release's, so the new
pods resume where the old ones stopped.
*/}}
{{- define "dtf.run" -}}
{{- printf "%s|%s|%s" (toJson .Values) .Chart.Version (include "dtf.workload" .) | sha256sum | trunc 8 -}}
{{- end -}}

{{/*
The controller of a role's pods (Job or StatefulSet) and so the base of its
pod hostnames: <fullname>-<role>-<run> for Jobs (pods mnist-ps-1a2b3c4d-0),
<fullname>-<role> for StatefulSets (pods mnist-ps-0). (dict "root" . "role" "ps")
*/}}
{{- define "dtf.controller" -}}
{{- if eq (include "dtf.workload" .root) "job" -}}
{{- printf "%s-%s-%s" (include "dtf.fullname" .root) .role (include "dtf.run" .root) -}}
{{- else -}}
{{- printf "%s-%s" (include "dtf.fullname" .root) .role -}}
{{- end -}}
{{- end -}}

{{/* host:port of every task of a role, as a JSON list. (dict "root" . "role" "ps") */}}
{{- define "dtf.hosts" -}}
{{- $ctrl := include "dtf.controller" . -}}
{{- $svc := include "dtf.service" . -}}
{{- $port := int (get .root.Values.port .role) -}}
{{- $n := int (get .root.Values .role).number -}}
{{- $hosts := list -}}
{{- range $i := until $n -}}
{{- $hosts = append $hosts (printf "%s-%d.%s:%d" $ctrl $i $svc $port) -}}
{{- end -}}
{{- toJson $hosts -}}
{{- end -}}

{{/*
DTF_CLUSTER: the "cluster" part of a TF_CONFIG, {"ps":[...],"worker":[...]}.
Names are <pod hostname>.<headless service>: they resolve from any pod of the
release's namespace (the pods' DNS search path adds <namespace>.svc...).
*/}}
{{- define "dtf.cluster" -}}
{{- printf "{\"ps\":%s,\"worker\":%s}" (include "dtf.hosts" (dict "root" . "role" "ps")) (include "dtf.hosts" (dict "root" . "role" "worker")) -}}
{{- end -}}

{{- define "dtf.labels" -}}
helm.sh/chart: {{ include "dtf.chart" . }}
{{ include "dtf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dtf
{{- end -}}

{{- define "dtf.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dtf.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of a role's objects. (dict "root" . "role" "ps") */}}
{{- define "dtf.roleLabels" -}}
{{ include "dtf.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "dtf.roleSelectorLabels" -}}
{{ include "dtf.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "dtf.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString .Values.image.tag) -}}
{{- end -}}

{{- define "dtf.configName" -}}
{{- printf "%s-config" (include "dtf.fullname" .) -}}
{{- end -}}

{{- define "dtf.tokenSecret" -}}
{{- if .Values.token.existingSecret -}}
{{- .Values.token.existingSecret -}}
{{- else -}}
{{- printf "%s-token" (include "dtf.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "dtf.hasToken" -}}
{{- if or .Values.token.value .Values.token.existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
The checkpoint directory: the release's, the same for every run, so that pods
made by an upgrade (other worker or ps counts, other training values) find the
checkpoints of the pods before them. The ps keys the files by the model's
layout itself (another model's files are not restored).
*/}}
{{- define "dtf.checkpointDir" -}}
{{- if .Values.checkpoint.dir -}}
{{- .Values.checkpoint.dir -}}
{{- else if .Values.checkpoint.persistence.enabled -}}
{{- printf "%s/%s" (include "dtf.checkpointMount" .) .Release.Name -}}
{{- else -}}
{{- printf "%s/ckpt/%s" (trimSuffix "/" .Values.logdir) .Release.Name -}}
{{- end -}}
{{- end -}}

{{/* Where the ps pods mount the checkpoint claim (checkpoint.persistence). */}}
{{- define "dtf.checkpointMount" -}}/var/lib/dtf/checkpoints{{- end -}}

{{- define "dtf.checkpointClaim" -}}
{{- if .Values.checkpoint.persistence.existingClaim -}}
{{- .Values.checkpoint.persistence.existingClaim -}}
{{- else -}}
{{- printf "%s-checkpoints" (include "dtf.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The training loop and the model: the ConfigMap's copy when given, else the image's. */}}
{{- define "dtf.trainScript" -}}
{{- if .Values.scripts.train -}}/etc/dtf/train.lua{{- else -}}{{ .Values.scripts.trainPath }}{{- end -}}
{{- end -}}
{{- define "dtf.modelScript" -}}
{{- if .Values.scripts.model -}}/etc/dtf/model.lua{{- else -}}{{ .Values.scripts.modelPath }}{{- end -}}
{{- end -}}

{{/*
A Lua literal for a hyperparameter value. Helm's --set gives 0.01 as a
string, so a string that reads as a number is written as a number.
*/}}
{{- define "dtf.luaValue" -}}
{{- $k := kindOf . -}}
{{- if eq $k "bool" -}}
{{- ternary "true" "false" . -}}
{{- else if or (eq $k "float64") (eq $k "int64") (eq $k "int") (eq $k "float32") (eq $k "int32") -}}
{{- . -}}
{{- else if regexMatch "^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$" (toString .) -}}
{{- . -}}
{{- else -}}
"{{ toString . | replace "\\" "\\\\" | replace "\"" "\\\"" | replace "\n" "\\n" | replace "\r" "\\r" }}"
{{- end -}}
{{- end -}}

{{- define "dtf.luaKey" -}}
{{- $keywords := list "and" "break" "do" "else" "elseif" "end" "false" "for" "function" "goto" "if" "in" "local" "nil" "not" "or" "repeat" "return" "then" "true" "until" "while" -}}
{{- if and (regexMatch "^[A-Za-z_][A-Za-z0-9_]*$" .) (not (has . $keywords)) -}}
{{- . -}}
{{- else -}}
["{{ . | replace "\\" "\\\\" | replace "\"" "\\\"" }}"]
{{- end -}}
{{- end -}}

{{/*
hparams.lua: the hyperparameters of values.hyperparams and modelHyperparams
(a custom model file's own), then what the chart
knows (where the model, the data, the logs and the checkpoints are). The sync
mode is always a boolean. Every value is written, a 0 too.
*/}}
{{- define "dtf.hparams" -}}
{{- $h := dict -}}
{{- range $k, $v := .Values.hyperparams -}}
{{- $_ := set $h $k $v -}}
{{- end -}}
{{- range $k, $v := .Values.modelHyperparams -}}
{{- $_ := set $h $k $v -}}
{{- end -}}
{{- $sync := .Values.hyperparams.sync -}}
{{- $_ := set $h "sync" (or (eq (toString $sync) "true") (eq (toString $sync) "sync")) -}}
{{- $_ = set $h "modelfile" (include "dtf.modelScript" .) -}}
{{- $_ = set $h "datadir" .Values.datadir -}}
{{- $_ = set $h "logdir" .Values.logdir -}}
{{- $_ = set $h "checkpoint_dir" (include "dtf.checkpointDir" .) -}}
{{- $_ = set $h "checkpoint_secs" .Values.checkpoint.secs -}}
{{- $_ = set $h "checkpoint_steps" .Values.checkpoint.steps -}}
-- Rendered by the dtf chart {{ .Chart.Version }} from the release's values
-- (release {{ .Release.Name }}, run {{ include "dtf.run" . }}). Read by
-- `dtf run {{ include "dtf.trainScript" . }} --config /etc/dtf/hparams.lua`.
return {
{{- range $k, $v := $h }}
  {{ include "dtf.luaKey" $k }} = {{ include "dtf.luaValue" $v }},
{{- end }}
}
{{ end -}}

{{/* A role's resources: the top-level limit/requests merged under the role's own. (dict "root" . "role" "ps") */}}
{{- define "dtf.resources" -}}
{{- $role := get .root.Values .role -}}
{{- $limits := merge (deepCopy (default dict $role.limit)) (deepCopy (default dict .root.Values.limit)) -}}
{{- $requests := merge (deepCopy (default dict $role.requests)) (deepCopy (default dict .root.Values.requests)) -}}
{{- $r := dict -}}
{{- if $limits }}{{ $_ := set $r "limits" $limits }}{{ end -}}
{{- if $requests }}{{ $_ := set $r "requests" $requests }}{{ end -}}
{{- toYaml $r -}}
{{- end -}}

{{/*
The shell that wraps dtf in StatefulSet pods with statefulset.idleWhenDone:
dtf runs as a child whose SIGTERM is forwarded (a pod deletion still lets a ps
save its checkpoint); after a clean exit the container idles instead of
exiting, since a StatefulSet would restart it and train again. Any other exit
status is the container's. Its arguments are dtf's: "$@". The trap comes
first, so that a SIGTERM as dtf starts still reaches it.
*/}}
{{- define "dtf.idleWrapper" -}}
pid= term=
trap 'term=1; [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null' TERM INT
dtf "$@" &
pid=$!
[ -z "$term" ] || kill -TERM "$pid" 2>/dev/null
while :; do
  wait "$pid"; rc=$?
  kill -0 "$pid" 2>/dev/null || break
done
trap 'exit 0' TERM INT
if [ "$rc" -ne 0 ] || [ -n "$term" ]; then exit "$rc"; fi
echo "dtf exited 0: training done; idling so that the StatefulSet does not train again (helm uninstall ends it)"
while :; do sleep 3600 & wait $!; done
{{- end -}}

{{/*
The pod template of a role. (dict "root" . "role" "ps")
*/}}
{{- define "dtf.podTemplate" -}}
{{- $root := .root -}}
{{- $role := .role -}}
{{- $rv := get $root.Values $role -}}
{{- $workload := include "dtf.workload" $root -}}
{{- $own := fromJson (include "dtf.ownVolumes" .) -}}
{{- $args := list "run" (include "dtf.trainScript" $root) (printf "--role=%s" $role) "--config" "/etc/dtf/hparams.lua" -}}
metadata:
  labels:
    {{- include "dtf.roleLabels" . | nindent 4 }}
    dtf/run: {{ include "dtf.run" $root | quote }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "dtf.configData" $root | sha256sum }}
    {{- if $root.Values.metrics.enabled }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $root.Values.metrics.port | quote }}
    prometheus.io/path: /metrics
    {{- end }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- if eq $workload "job" }}
  restartPolicy: {{ $root.Values.job.restartPolicy }}
  subdomain: {{ include "dtf.service" . }}
  {{- end }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
  {{- with $root.Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (default $root.Values.nodeSelector $rv.nodeSelector) }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (default $root.Values.tolerations $rv.tolerations) }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (default $root.Values.affinity $rv.affinity) }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (include "dtf.topologySpread" . | fromYamlArray) }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $root.Values.volumePermissions.enabled }}
  initContainers:
    {{- include "dtf.volumePermissions" (dict "root" $root "role" $role "mounts" $own.mounts) | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ $role }}
      image: {{ include "dtf.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- if and (eq $workload "statefulset") $root.Values.statefulset.idleWhenDone }}
      command:
        - /bin/sh
        - -c
        - |
          {{- include "dtf.idleWrapper" $root | nindent 10 }}
        - dtf
      {{- else }}
      command: ["dtf"]
      {{- end }}
      args:
        {{- toYaml $args | nindent 8 }}
      env:
        - name: DTF_CLUSTER
          value: {{ include "dtf.cluster" $root | quote }}
        {{- if include "dtf.hasToken" $root }}
        - name: DTF_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ include "dtf.tokenSecret" $root }}
              key: {{ $root.Values.token.key }}
        {{- end }}
        - name: OPENBLAS_NUM_THREADS
          value: {{ default 1 $root.Values.hyperparams.threads | toString | quote }}
        - name: HOME
          value: {{ $root.Values.home | quote }}
        {{- if $root.Values.metrics.enabled }}
        - name: DTF_METRICS_PORT
          value: {{ $root.Values.metrics.port | quote }}
        {{- end }}
        {{- with $root.Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- /* A container port only where something listens: the ps port on a ps
           (port.worker only names the workers), the metrics port when on. */}}
      {{- if or (eq $role "ps") $root.Values.metrics.enabled }}
      ports:
        {{- if eq $role "ps" }}
        - name: ps
          containerPort: {{ $root.Values.port.ps }}
          protocol: TCP
        {{- end }}
        {{- if $root.Values.metrics.enabled }}
        - name: metrics
          containerPort: {{ $root.Values.metrics.port }}
          protocol: TCP
        {{- end }}
      {{- end }}
      {{- if eq $role "ps" }}
      readinessProbe:
        tcpSocket:
          port: ps
        {{- toYaml $root.Values.readinessProbe | nindent 8 }}
      {{- end }}
      {{- with $root.Values.livenessProbe }}
      {{- if .enabled }}
      livenessProbe:
        exec:
          command: ["/bin/sh", "/etc/dtf/liveness.sh", {{ $role | quote }}, {{ .workerStallSeconds | toString | quote }}]
        {{- toYaml (omit . "enabled" "workerStallSeconds") | nindent 8 }}
      {{- end }}
      {{- end }}
      resources:
        {{- include "dtf.resources" . | nindent 8 }}
      {{- with $root.Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        {{- toYaml $own.mounts | nindent 8 }}
        {{- with $root.Values.volumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    {{- toYaml $own.volumes | nindent 4 }}
    {{- with $root.Values.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/*
The ConfigMap's data, checked: hparams.lua, the liveness probe, the scripts
given with --set-file (the image's own otherwise), under Kubernetes' 1 MiB.
*/}}
{{- define "dtf.configData" -}}
{{- $data := dict "hparams.lua" (include "dtf.hparams" .) "liveness.sh" (.Files.Get "files/liveness.sh") -}}
{{- with .Values.scripts.train }}{{ $_ := set $data "train.lua" . }}{{ end -}}
{{- with .Values.scripts.model }}{{ $_ := set $data "model.lua" . }}{{ end -}}
{{- $total := 0 -}}
{{- range $k, $v := $data -}}
{{- $total = add $total (len $k) (len $v) -}}
{{- end -}}
{{- if gt (int $total) 1048576 -}}
{{- fail (printf "the ConfigMap %s would hold %d bytes (train.lua %d, model.lua %d, hparams.lua %d): over Kubernetes' 1 MiB (1048576 bytes) limit for a ConfigMap; make scripts.train / scripts.model smaller" (include "dtf.configName" .) (int $total) (len .Values.scripts.train) (len .Values.scripts.model) (len (get $data "hparams.lua"))) -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}
