// The titan console's OpsCommandSchemaV1 as the system we replace declares it (seed 000:
// z.literal(1), z.string().uuid(), z.string().datetime(), the type enum, a record of params,
// meta strings), decoding the bytes in argv[2] (JSON.parse + parse) argv[3] times per round,
// argv[4] rounds. Prints {"median_ns": <per message>} for crates/contracts/benches/anchors.rs.
import { readFileSync } from "node:fs";
import { z } from "zod";

const OpsCommandSchemaV1 = z.object({
  v: z.literal(1),
  id: z.string().uuid(),
  ts: z.string().datetime(),
  type: z.enum(["restart", "deploy", "cancel_all", "set_risk", "halt", "disarm", "arm", "export_evidence"]),
  target: z.string(),
  params: z.record(z.unknown()).optional(),
  meta: z.object({
    initiator_id: z.string(),
    reason: z.string(),
    signature: z.string(),
  }),
});

const text = readFileSync(process.argv[2], "utf8");
const iterations = Number(process.argv[3]);
const rounds = Number(process.argv[4]);
OpsCommandSchemaV1.parse(JSON.parse(text)); // refuses to measure a message it rejects

const perMessage = [];
let sink = 0;
for (let round = 0; round < rounds; round++) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    sink += OpsCommandSchemaV1.parse(JSON.parse(text)).v;
  }
  perMessage.push(Number(process.hrtime.bigint() - start) / iterations);
}
perMessage.sort((a, b) => a - b);
console.log(JSON.stringify({ median_ns: perMessage[Math.floor(rounds / 2)], sink }));
