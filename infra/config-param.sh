#!/usr/bin/env bash
# Prints `HlsyncConfig="..."` for `sam deploy --parameter-overrides`: the config file's TOML text in
# the quoting SAM CLI's parameter parser expects (the text spans lines and contains quotes, so it
# cannot be passed bare). That parser unescapes only \" \' and "\ ", so double quotes are escaped and
# a backslash right before a quote or space, which it cannot carry, is refused.
# Usage: sam deploy --parameter-overrides "$(bash infra/config-param.sh hlsync.toml)" ...
set -euo pipefail
file="${1:-}"
if [[ -z $file || ! -f $file ]]; then
  echo "usage: config-param.sh CONFIG.toml (the hlsync config of SPEC.md section 3; got '${file}')" >&2
  exit 2
fi
text="$(<"$file")"
if [[ $text == *'\"'* || $text == *"\\'"* || $text == *'\ '* ]]; then
  echo "$file has a backslash before a quote or a space, which sam deploy cannot pass on:" \
    "use a TOML literal string ('...') or deploy with the CDK app instead" >&2
  exit 1
fi
printf 'HlsyncConfig="%s"\n' "${text//\"/\\\"}"
