import { execFile } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
} from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { type OpsTestServer, startOpsServer } from "./support/ops-harness.js";

const root = join(import.meta.dirname, "..");
const run = promisify(execFile);

/** `buf curl` from the @bufbuild/buf package: a third-party client that knows no local protos. */
async function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(
      join(root, "node_modules", ".bin", "buf"),
      ["curl", ...args],
      {
        // Away from this repository's buf.yaml: the schema can only come from the server.
        cwd: tmpdir(),
        timeout: 30_000,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
  }
}

const apiMethods = [
  "receipts.v1.MembershipService/AddMembers",
  "receipts.v1.MembershipService/ListMembers",
  "receipts.v1.MembershipService/RemoveMembers",
  "receipts.v1.MessageLifecycleService/DeleteMessages",
  "receipts.v1.PrivacyService/GetReceiptSettings",
  "receipts.v1.PrivacyService/SetReceiptSettings",
  "receipts.v1.ReadReceiptService/BatchGetReadMembers",
  "receipts.v1.ReadReceiptService/GetReceipts",
  "receipts.v1.ReadReceiptService/ListReadMembers",
  "receipts.v1.ReadReceiptService/MarkConversationRead",
  "receipts.v1.ReadReceiptService/SendReceipts",
  "receipts.v1.ReadReceiptService/TrackMessages",
  "receipts.v1.ReadReceiptService/WatchReceipts",
  "receipts.v1.UserDataService/EraseUser",
  "receipts.v1.UserDataService/ExportUserData",
];

describe("server reflection", () => {
  let server: OpsTestServer;
  beforeAll(async () => {
    server = await startOpsServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it.each(["grpc-v1", "grpc-v1alpha"])(
    "lets buf curl list every method through %s",
    async (protocol) => {
      const listed = await bufCurl([
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--reflect-protocol",
        protocol,
        "--list-methods",
        server.baseUrl,
      ]);
      expect(listed.stderr).toBe("");
      const methods = listed.stdout.trim().split("\n");
      expect(methods).toEqual(expect.arrayContaining(apiMethods));
      expect(methods).toEqual(
        expect.arrayContaining([
          "grpc.health.v1.Health/Check",
          "grpc.health.v1.Health/Watch",
          "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ]),
      );
    },
  );

  it("lets buf curl call the API with JSON it encodes from the reflected schema (timestamps included)", async () => {
    const call = (method: string, body: object) =>
      bufCurl([
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--data",
        JSON.stringify(body),
        `${server.baseUrl}/receipts.v1.ReadReceiptService/${method}`,
      ]);
    const tracked = await call("TrackMessages", {
      messages: [
        {
          conversationId: "dm-reflect",
          conversationType: "CONVERSATION_TYPE_C2C",
          messageId: "reflect-1",
          senderId: "alice",
          receiverId: "bob",
          sentAt: "2026-01-02T10:00:00Z",
        },
      ],
    });
    expect(tracked.stderr).toBe("");
    expect(JSON.parse(tracked.stdout)).toEqual({ trackedCount: 1 });
    const got = await call("GetReceipts", {
      conversationId: "dm-reflect",
      messageIds: ["reflect-1"],
    });
    expect(JSON.parse(got.stdout).receipts[0]).toMatchObject({
      messageId: "reflect-1",
      conversationType: "CONVERSATION_TYPE_C2C",
      unreadCount: 1,
      sentAt: "2026-01-02T10:00:00Z",
    });
    const missing = await call("GetReceipts", {
      conversationId: "dm-reflect",
      messageIds: ["nope"],
    });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain("not_found");
  });

  describe("answered request by request on one stream", () => {
    const ask = async (
      requests: Partial<ServerReflectionRequest["messageRequest"]>[],
    ): Promise<ServerReflectionResponse[]> => {
      const client = createClient(
        ServerReflection,
        createGrpcTransport({ baseUrl: server.baseUrl }),
      );
      async function* outgoing() {
        for (const messageRequest of requests) {
          yield create(ServerReflectionRequestSchema, {
            host: "h",
            messageRequest: messageRequest as ServerReflectionRequest["messageRequest"],
          });
        }
      }
      const responses: ServerReflectionResponse[] = [];
      for await (const response of client.serverReflectionInfo(outgoing()))
        responses.push(response);
      return responses;
    };
    const fileNames = (response: ServerReflectionResponse | undefined): string[] =>
      response?.messageResponse.case === "fileDescriptorResponse"
        ? response.messageResponse.value.fileDescriptorProto.map(
            (bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name,
          )
        : [];

    it("sends a file with its imports once per stream, finds methods and nested types, and reports unknown names as NOT_FOUND", async () => {
      const [byName, again, byMethod, byNested, unknown, noQuestion] = await ask([
        { case: "fileByFilename", value: "receipts/v1/receipts.proto" },
        { case: "fileByFilename", value: "receipts/v1/receipts.proto" },
        { case: "fileContainingSymbol", value: "receipts.v1.MembershipService.AddMembers" },
        {
          case: "fileContainingSymbol",
          value: "grpc.health.v1.HealthCheckResponse.ServingStatus",
        },
        { case: "fileContainingSymbol", value: "receipts.v1.Nope" },
        { case: undefined },
      ]);
      expect(fileNames(byName)).toEqual([
        "receipts/v1/receipts.proto",
        "google/protobuf/timestamp.proto",
      ]);
      expect(byName?.validHost).toBe("h");
      expect(byName?.originalRequest?.messageRequest.case).toBe("fileByFilename");
      // The requested file again, without the import this stream already received.
      expect(fileNames(again)).toEqual(["receipts/v1/receipts.proto"]);
      expect(fileNames(byMethod)).toEqual(["receipts/v1/membership.proto"]);
      expect(fileNames(byNested)).toEqual(["grpc/health/v1/health.proto"]);
      expect(unknown?.messageResponse).toMatchObject({
        case: "errorResponse",
        value: { errorCode: 5, errorMessage: "symbol receipts.v1.Nope not found" },
      });
      expect(noQuestion?.messageResponse).toMatchObject({
        case: "errorResponse",
        value: { errorCode: 3 },
      });
    });

    it("serves descriptors that are complete: imports and json names restored", async () => {
      const [response] = await ask([
        { case: "fileByFilename", value: "receipts/v1/receipts.proto" },
      ]);
      const file =
        response?.messageResponse.case === "fileDescriptorResponse"
          ? fromBinary(
              FileDescriptorProtoSchema,
              response.messageResponse.value.fileDescriptorProto[0] ?? new Uint8Array(),
            )
          : undefined;
      expect(file?.package).toBe("receipts.v1");
      expect(file?.dependency).toEqual(["google/protobuf/timestamp.proto"]);
      expect(file?.service.map((s) => s.name)).toEqual(["ReadReceiptService"]);
    });

    it("answers list_services and extension questions on v1alpha too", async () => {
      const client = createClient(
        ServerReflectionV1Alpha,
        createGrpcTransport({ baseUrl: server.baseUrl }),
      );
      async function* outgoing() {
        yield { messageRequest: { case: "listServices" as const, value: "" } };
        yield {
          messageRequest: {
            case: "allExtensionNumbersOfType" as const,
            value: "receipts.v1.TrackedMessage",
          },
        };
        yield {
          messageRequest: {
            case: "fileContainingExtension" as const,
            value: { containingType: "receipts.v1.TrackedMessage", extensionNumber: 100 },
          },
        };
      }
      const responses = [];
      for await (const response of client.serverReflectionInfo(outgoing()))
        responses.push(response);
      const [services, extensions, extension] = responses;
      expect(
        services?.messageResponse.case === "listServicesResponse" &&
          services.messageResponse.value.service.map((s) => s.name),
      ).toEqual([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "receipts.v1.MembershipService",
        "receipts.v1.MessageLifecycleService",
        "receipts.v1.PrivacyService",
        "receipts.v1.ReadReceiptService",
        "receipts.v1.UserDataService",
      ]);
      expect(extensions?.messageResponse).toMatchObject({
        case: "allExtensionNumbersResponse",
        value: { baseTypeName: "receipts.v1.TrackedMessage", extensionNumber: [] },
      });
      expect(extension?.messageResponse).toMatchObject({
        case: "errorResponse",
        value: { errorCode: 5 },
      });
    });
  });
});
