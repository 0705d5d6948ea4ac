import { randomUUID } from "node:crypto";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { MembershipService as MembershipRpc } from "../../gen/receipts/v1/membership_pb.js";
import { ReadReceiptService } from "../../gen/receipts/v1/receipts_pb.js";
import { keyspace, sharedPrefix } from "./cassandra-store-fixtures.js";
import { minutes } from "./fixtures.js";
import { startTestServer } from "./test-server.js";

/** The service on the file's Cassandra keyspace (embedded change feed), and a group of `members`. */
export async function serverWithGroup(members: string[]) {
  const server = await startTestServer({
    RECEIPTS_STORE: "cassandra",
    RECEIPTS_CASSANDRA_KEYSPACE: keyspace.keyspace,
    RECEIPTS_CHANGE_FEED: "embedded",
    RECEIPTS_REDIS_KEY_PREFIX: sharedPrefix,
  });
  const transport = createConnectTransport({ baseUrl: server.baseUrl, httpVersion: "1.1" });
  const groupId = `g-${randomUUID()}`;
  const membership = createClient(MembershipRpc, transport);
  await membership.addMembers({ groupId, userIds: members, joinedAt: timestampFromMs(minutes(0)) });
  return { server, groupId, receipts: createClient(ReadReceiptService, transport) };
}
