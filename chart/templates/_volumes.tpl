{{/*
Where dtf writes, and the volumes the chart gives it: the root file system is
read-only (securityContext.readOnlyRootFilesystem), so every path dtf writes
must be on a volume. dtf writes:
  - logdir (deploy.log; every task);
  - the checkpoint directory (the ps tasks; a temporary file beside each
    checkpoint, then a rename);
  - HOME (the REPL's ~/.dtf_history, when someone runs `dtf repl` in a pod);
  - /tmp (nothing of dtf's own today; the shell and tools a user runs there);
  - hyperparams.save (worker 0's trained model, when set).
The chart mounts an emptyDir at /tmp and at HOME (unless volumeMounts has that
very path), the checkpoint claim on the ps pods (checkpoint.persistence), and
an emptyDir at logdir and at the checkpoint directory where no writable mount
(the chart's or volumeMounts') holds them already. A hyperparams.save outside
every writable mount fails the render.

(dict "root" . "role" "ps") -> JSON {"volumes": [...], "mounts": [...]}
*/}}
{{- define "dtf.ownVolumes" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $vols := list (dict "name" "dtf-config" "configMap" (dict "name" (include "dtf.configName" $root))) -}}
{{- $mounts := list (dict "name" "dtf-config" "mountPath" "/etc/dtf" "readOnly" true) -}}
{{- $userPaths := list -}}
{{- range $v.volumeMounts }}{{ $userPaths = append $userPaths (trimSuffix "/" .mountPath) }}{{ end -}}
{{- range $name, $path := dict "dtf-tmp" "/tmp" "dtf-home" (trimSuffix "/" $v.home) -}}
{{- if not (has $path $userPaths) -}}
{{- $vols = append $vols (dict "name" $name "emptyDir" (dict)) -}}
{{- $mounts = append $mounts (dict "name" $name "mountPath" $path) -}}
{{- end -}}
{{- end -}}
{{- if and (eq .role "ps") $v.checkpoint.persistence.enabled -}}
{{- $vols = append $vols (dict "name" "dtf-checkpoints" "persistentVolumeClaim" (dict "claimName" (include "dtf.checkpointClaim" $root))) -}}
{{- $mounts = append $mounts (dict "name" "dtf-checkpoints" "mountPath" (include "dtf.checkpointMount" $root)) -}}
{{- end -}}
{{- $need := list (dict "name" "dtf-logs" "path" (trimSuffix "/" $v.logdir)) -}}
{{- if eq .role "ps" -}}
{{- $need = append $need (dict "name" "dtf-checkpoint-dir" "path" (trimSuffix "/" (include "dtf.checkpointDir" $root))) -}}
{{- end -}}
{{- range $need -}}
{{- $path := .path -}}
{{- $writable := concat $mounts $v.volumeMounts -}}
{{- if not (include "dtf.onWritable" (dict "path" $path "mounts" $writable)) -}}
{{- $vols = append $vols (dict "name" .name "emptyDir" (dict)) -}}
{{- $mounts = append $mounts (dict "name" .name "mountPath" $path) -}}
{{- end -}}
{{- end -}}
{{- with $v.hyperparams.save -}}
{{- if and (eq $.role "worker") (not (include "dtf.onWritable" (dict "path" (toString .) "mounts" (concat $mounts $v.volumeMounts)))) -}}
{{- fail (printf "hyperparams.save=%s is on no writable volume (the root file system is read-only): mount one there with volumes and volumeMounts" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "volumes" $vols "mounts" $mounts) -}}
{{- end -}}

{{/* "true" when path is at or below the mountPath of a mount that is not readOnly. (dict "path" p "mounts" list) */}}
{{- define "dtf.onWritable" -}}
{{- $path := .path -}}
{{- range .mounts -}}
{{- $mp := trimSuffix "/" .mountPath -}}
{{- if and (not .readOnly) (or (eq $path $mp) (hasPrefix (printf "%s/" $mp) $path)) -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The root init container of volumePermissions.enabled: mkdir -p of the
directories this role writes, each given to runAsUser:runAsGroup, never made
world-writable. (dict "root" . "role" "ps" "mounts" <the chart's own mounts>)
*/}}
{{- define "dtf.volumePermissions" -}}
{{- $root := .root -}}
{{- $psc := default (dict) $root.Values.podSecurityContext -}}
{{- $dirs := list (trimSuffix "/" $root.Values.logdir) -}}
{{- if eq .role "ps" }}{{ $dirs = append $dirs (include "dtf.checkpointDir" $root) }}{{ end -}}
- name: volume-permissions
  image: {{ include "dtf.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command:
    - /bin/sh
    - -c
    - |
      owner=$1; shift
      for d in "$@"; do
        mkdir -p "$d" && chown "$owner" "$d" && chmod u+rwx,g+rwx,o-w "$d" || exit 1
        echo "volume-permissions: $d is $(stat -c '%U(%u):%G(%g) %A' "$d")"
      done
    - volume-permissions
  args:
    - {{ printf "%v:%v" (default 10001 $psc.runAsUser) (default 10001 $psc.runAsGroup) | quote }}
    {{- range $dirs }}
    - {{ . | quote }}
    {{- end }}
  securityContext:
    runAsUser: 0
    runAsGroup: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
      add: ["CHOWN", "FOWNER", "DAC_OVERRIDE"]
  resources:
    {{- include "dtf.resources" (dict "root" $root "role" .role) | nindent 4 }}
  volumeMounts:
    {{- toYaml .mounts | nindent 4 }}
    {{- with $root.Values.volumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The ps pods' topologySpreadConstraints: ps.topologySpreadConstraints, or one soft spread over nodes. (dict "root" . "role" "ps") */}}
{{- define "dtf.topologySpread" -}}
{{- if eq .role "ps" -}}
{{- $c := .root.Values.ps.topologySpreadConstraints -}}
{{- if kindIs "invalid" $c -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "dtf.roleSelectorLabels" . | nindent 6 }}
{{- else -}}
{{- toYaml $c -}}
{{- end -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/*
Where the ps checkpoints live, for NOTES.txt: "claim", "hostPath:<node path>",
"volume:<name>" (another volume of volumeMounts) or "emptyDir".
*/}}
{{- define "dtf.checkpointWhere" -}}
{{- if .Values.checkpoint.persistence.enabled -}}
claim
{{- else -}}
{{- $dir := trimSuffix "/" (include "dtf.checkpointDir" .) -}}
{{- $best := dict -}}
{{- range .Values.volumeMounts -}}
{{- $mp := trimSuffix "/" .mountPath -}}
{{- if and (not .readOnly) (or (eq $dir $mp) (hasPrefix (printf "%s/" $mp) $dir)) (gt (len $mp) (len (default "" $best.mp))) -}}
{{- $best = dict "mp" $mp "name" .name "sub" (trimPrefix $mp $dir) -}}
{{- end -}}
{{- end -}}
{{- if not $best.name -}}
emptyDir
{{- else -}}
{{- $vol := dict -}}
{{- range $.Values.volumes }}{{ if eq .name $best.name }}{{ $vol = . }}{{ end }}{{ end -}}
{{- if $vol.hostPath -}}
hostPath:{{ trimSuffix "/" $vol.hostPath.path }}{{ $best.sub }}
{{- else -}}
volume:{{ $best.name }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
