# Sourced by start_slurm.sh and start_sshd.sh: one way to start a daemon and know it is ready.
#
#   started PATTERN LOG COMMAND...
#
# Runs COMMAND in the background with its output (stdout and stderr) through a FIFO read here
# line by line, until a line containing PATTERN: that line is the event, no polling. 20 s without
# a line is a failure guard: the daemon's log so far goes to stderr and the script exits 1.
# Prints the daemon's pid; the rest of its output goes on to LOG.
started() {
  local pattern=$1 log=$2
  shift 2
  rm -f "$log.fifo" && mkfifo "$log.fifo"
  "$@" > "$log.fifo" 2>&1 < /dev/null &
  echo $!
  local out line=
  exec {out}< "$log.fifo"
  while IFS= read -r -t 20 line <&"$out"; do
    printf '%s\n' "$line" >> "$log"
    [[ $line == *"$pattern"* ]] && break
  done
  if [[ $line != *"$pattern"* ]]; then
    echo "$(basename "$0"): $* did not start: $(cat "$log")" >&2
    exit 1
  fi
  cat <&"$out" >> "$log" &
  exec {out}<&-
}
