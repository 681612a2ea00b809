#!/usr/bin/env bash
# Redrives the failure queue: every invocation that failed after AWS's two retries is
# invoked again, asynchronously, on the function that failed it, with its original event;
# its message is deleted once the new invocation was accepted. Fix the cause first (the
# FailureQueueNotEmpty alarm and the function's logs say what failed).
#
#   scripts/redrive-failures.sh [--dry-run] [--max N] [--endpoint-url URL] QUEUE_URL
#
# QUEUE_URL is the FailureQueueUrl output of the functions stack
# (`aws cloudformation describe-stacks --stack-name mir-<stage>-functions`).
# --dry-run lists what would be redriven and leaves the queue as it is; --max stops after
# N messages (default: until the queue is empty). Needs the AWS CLI and python3; uses
# the usual AWS credentials and region.
set -euo pipefail

dry_run=0
max=0
endpoint=()
queue=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --max) max="$2"; shift ;;
    --endpoint-url) endpoint=(--endpoint-url "$2"); shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "redrive: unknown option $1" >&2; exit 2 ;;
    *) queue="$1" ;;
  esac
  shift
done
if [ -z "$queue" ]; then
  echo "usage: $0 [--dry-run] [--max N] [--endpoint-url URL] QUEUE_URL" >&2
  exit 2
fi
if ! [[ "$max" =~ ^[0-9]+$ ]]; then
  echo "redrive: --max takes a number, not $max" >&2
  exit 2
fi

# A dry run leaves the messages visible (it only looks); a redrive hides each one while
# it re-invokes it.
visibility=120
[ "$dry_run" = 1 ] && visibility=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
done_count=0
failed=0
seen=""
while :; do
  aws "${endpoint[@]}" sqs receive-message --queue-url "$queue" --max-number-of-messages 10 \
    --visibility-timeout "$visibility" --wait-time-seconds 1 --output json >"$work/batch.json"
  # One line per message: receipt handle, function ARN (without qualifier), message id;
  # the original event goes to $work/<message id>.json.
  python3 - "$work" >"$work/list.tsv" <<'EOF'
import json, sys, os
work = sys.argv[1]
text = open(os.path.join(work, "batch.json")).read().strip()
batch = json.loads(text) if text else {}
for m in batch.get("Messages", []):
    try:
        record = json.loads(m["Body"])
        arn = record["requestContext"]["functionArn"]
        payload = record["requestPayload"]
    except (ValueError, KeyError, TypeError) as e:
        print(f"redrive: message {m['MessageId']} is not a Lambda failure record ({e}); left in the queue", file=sys.stderr)
        continue
    # arn:aws:lambda:region:account:function:name[:qualifier]
    parts = arn.split(":")
    function = ":".join(parts[:7])
    with open(os.path.join(work, m["MessageId"] + ".json"), "w") as f:
        json.dump(payload, f)
    print(f"{m['ReceiptHandle']}\t{function}\t{m['MessageId']}")
EOF
  [ -s "$work/list.tsv" ] || break
  new=0
  while IFS=$'\t' read -r receipt function id; do
    case " $seen " in *" $id "*) continue ;; esac
    seen="$seen $id"
    new=1
    if [ "$dry_run" = 1 ]; then
      echo "would redrive $id to ${function##*:}: $(head -c 200 "$work/$id.json")"
    else
      if aws "${endpoint[@]}" lambda invoke --function-name "$function" --invocation-type Event \
        --payload "fileb://$work/$id.json" "$work/out.json" >/dev/null; then
        aws "${endpoint[@]}" sqs delete-message --queue-url "$queue" --receipt-handle "$receipt"
        echo "redriven $id to ${function##*:}"
      else
        echo "redrive: could not invoke ${function##*:} for $id; left in the queue" >&2
        failed=$((failed + 1))
      fi
    fi
    done_count=$((done_count + 1))
    if [ "$max" != 0 ] && [ "$done_count" -ge "$max" ]; then break 2; fi
  done <"$work/list.tsv"
  # A dry run sees the same messages again: stop once a batch brings nothing new.
  [ "$new" = 1 ] || break
done
verb=redriven
[ "$dry_run" = 1 ] && verb="to redrive"
echo "$((done_count - failed)) $verb, $failed failed"
[ "$failed" = 0 ]
