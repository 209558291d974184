"""python-jsonschema (draft 2020-12, format checks on) decoding the bytes in argv[2] against the
schema in argv[1] (json.loads + validate), argv[3] times per round, argv[4] rounds. Prints
{"median_ns": <per message>} for crates/contracts/benches/anchors.rs."""

import json
import sys
import time

from jsonschema import Draft202012Validator, FormatChecker

schema = json.load(open(sys.argv[1]))
payload = open(sys.argv[2], "rb").read()
iterations = int(sys.argv[3])
rounds = int(sys.argv[4])

validator = Draft202012Validator(schema, format_checker=FormatChecker())
validator.validate(json.loads(payload))  # refuses to measure a message it rejects
# The anchor checks formats as ours does (date-time needs rfc3339-validator installed).
checker = FormatChecker()
assert not checker.conforms("yesterday", "date-time"), "date-time is not checked"
assert not checker.conforms("not-a-uuid", "uuid"), "uuid is not checked"

per_message = []
for _ in range(rounds):
    start = time.perf_counter_ns()
    for _ in range(iterations):
        validator.validate(json.loads(payload))
    per_message.append((time.perf_counter_ns() - start) / iterations)
per_message.sort()
print(json.dumps({"median_ns": per_message[rounds // 2]}))
