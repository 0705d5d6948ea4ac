import {
  create,
  type DescMessage,
  type DescService,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";

type GrpcMethod = (this: grpc.Client, ...args: unknown[]) => unknown;

/**
 * A stock @grpc/grpc-js client for a protobuf-es service descriptor: grpc-js
 * does the transport, protobuf-es only (de)serializes. This is what a backend
 * microservice that uses grpc-js would run.
 */
export function createGrpcJsClient(service: DescService, address: string): grpc.Client {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      requestStream:
        method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream:
        method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      // Plain objects in, as grpc-js users write them; protobuf-es fills in the defaults.
      requestSerialize: (message: unknown) =>
        Buffer.from(
          toBinary(method.input, create(method.input, message as MessageInitShape<DescMessage>)),
        ),
      requestDeserialize: (bytes: Buffer) => fromBinary(method.input, bytes),
      responseSerialize: (message: unknown) =>
        Buffer.from(
          toBinary(method.output, create(method.output, message as MessageInitShape<DescMessage>)),
        ),
      responseDeserialize: (bytes: Buffer) => fromBinary(method.output, bytes),
    };
  }
  const Client = grpc.makeGenericClientConstructor(definition, service.typeName);
  return new Client(address, grpc.credentials.createInsecure());
}

/** Calls a unary method and resolves its response, or rejects with the grpc-js ServiceError. */
export function unary<O>(
  client: grpc.Client,
  method: string,
  request: unknown,
  metadata = new grpc.Metadata(),
): Promise<O> {
  return new Promise((resolve, reject) => {
    const call = (client as unknown as Record<string, GrpcMethod | undefined>)[method];
    if (call === undefined) throw new Error(`no method ${method}`);
    call.call(client, request, metadata, (error: grpc.ServiceError | null, response: O) =>
      error === null ? resolve(response) : reject(error),
    );
  });
}

/** Opens a server stream. */
export function serverStream<O>(
  client: grpc.Client,
  method: string,
  request: unknown,
  metadata = new grpc.Metadata(),
): grpc.ClientReadableStream<O> {
  const call = (client as unknown as Record<string, GrpcMethod | undefined>)[method];
  if (call === undefined) throw new Error(`no method ${method}`);
  return call.call(client, request, metadata) as grpc.ClientReadableStream<O>;
}
