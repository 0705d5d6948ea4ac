import { reply } from "./load-ipc.js";
import type { LoadTask } from "./load-tasks.js";
import { pacedSend } from "./paced-send.js";
import { mix, sendReceipts } from "./rpc-load.js";
import { cassandraCeiling, redisRead, sqliteCeiling } from "./store-ceiling-loads.js";
import { openStreams } from "./stream-load.js";
import { webhookDeliveryCost } from "./webhook-delivery-cost.js";

/**
 * A load process: started by the benchmark (pinned away from the server's
 * core), it receives one task over IPC, runs it and sends back what it saw.
 */
process.on("disconnect", () => process.exit(0));

process.once("message", (message: { start: LoadTask }) => {
  run(message.start).then(
    (result) => reply({ result }),
    (error: unknown) => reply({ failed: error instanceof Error ? error.stack : String(error) }),
  );
});

async function run(task: LoadTask): Promise<unknown> {
  switch (task.kind) {
    case "send":
      return sendReceipts(task);
    case "paced-send":
      return pacedSend(task);
    case "streams":
      return openStreams(task);
    case "redis-read":
      return redisRead(task);
    case "sqlite-ceiling":
      return sqliteCeiling(task);
    case "cassandra-ceiling":
      return cassandraCeiling(task);
    case "mix":
      return mix(task);
    case "webhook-delivery-cost":
      return webhookDeliveryCost(task);
  }
}
