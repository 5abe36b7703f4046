#!/bin/sh
# Mints an HS256 token with openssl, the way a game backend's script or a
# developer's shell can:
#
#   sh mint-hs256.sh SECRET '{"sub":"user-1","aud":"tickrelay","exp":1767225900}'
#
# SECRET is used as text (openssl dgst -hmac), so give the relay the same
# characters in auth.Config.Secrets; use at least 32 random ones, for
# example the output of `openssl rand -base64 32`. The payload is signed as
# given: compute exp yourself, e.g. $(( $(date +%s) + 300 )).
#
# The same as a one-liner, with SECRET and PAYLOAD in the environment:
#   b(){ openssl base64 -A|tr '+/' '-_'|tr -d '=';};h=$(printf '{"alg":"HS256","typ":"JWT"}'|b);p=$(printf %s "$PAYLOAD"|b);echo "$h.$p.$(printf %s "$h.$p"|openssl dgst -sha256 -hmac "$SECRET" -binary|b)"
set -eu
[ $# -eq 2 ] || { echo "usage: $0 SECRET PAYLOAD_JSON" >&2; exit 2; }
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
header=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)
payload=$(printf '%s' "$2" | b64url)
signature=$(printf '%s' "$header.$payload" | openssl dgst -sha256 -hmac "$1" -binary | b64url)
printf '%s.%s.%s\n' "$header" "$payload" "$signature"
