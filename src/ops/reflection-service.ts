import {
  create,
  createRegistry,
  type DescFile,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type Registry,
  toBinary,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import {
  type ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import type { ServerReflection as ServerReflectionV1Alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import {
  ServerReflectionRequestSchema as RequestSchemaV1Alpha,
  ServerReflectionResponseSchema as ResponseSchemaV1Alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

type ResponseInit = MessageInitShape<typeof ServerReflectionResponseSchema>;

/**
 * What the server offers, from the generated descriptors: every file that
 * declares a served service, and every file those import (transitively,
 * google/protobuf/timestamp.proto included).
 */
class DescriptorIndex {
  readonly services: readonly string[];
  readonly #files = new Map<string, DescFile>();
  readonly #registry: Registry;

  constructor(services: readonly DescService[]) {
    this.services = [...new Set(services.map((s) => s.typeName))].sort();
    const visit = (file: DescFile) => {
      if (this.#files.has(file.proto.name)) return;
      this.#files.set(file.proto.name, file);
      file.dependencies.forEach(visit);
    };
    for (const service of services) visit(service.file);
    this.#registry = createRegistry(...this.#files.values());
  }

  fileByName(name: string): DescFile | undefined {
    return this.#files.get(name);
  }

  /** A service, method, message (or one of its fields), enum or extension, fully qualified. */
  fileContainingSymbol(symbol: string): DescFile | undefined {
    const name = symbol.startsWith(".") ? symbol.slice(1) : symbol;
    const found = this.#registry.get(name);
    if (found !== undefined) return found.file;
    const dot = name.lastIndexOf(".");
    const parent = this.#registry.get(name.slice(0, dot));
    const member = name.slice(dot + 1);
    switch (parent?.kind) {
      case "service":
        return parent.methods.some((m) => m.name === member) ? parent.file : undefined;
      case "message":
        return parent.fields.some((f) => f.name === member) ? parent.file : undefined;
      case "enum":
        return parent.values.some((v) => v.name === member) ? parent.file : undefined;
      default:
        return undefined;
    }
  }

  fileContainingExtension(typeName: string, number: number): DescFile | undefined {
    const message = this.#registry.getMessage(typeName);
    return message && this.#registry.getExtensionFor(message, number)?.file;
  }

  /** Field numbers of the known extensions of a message, or undefined for an unknown message. */
  extensionNumbers(typeName: string): number[] | undefined {
    if (this.#registry.getMessage(typeName) === undefined) return undefined;
    const numbers: number[] = [];
    for (const type of this.#registry) {
      if (type.kind === "extension" && type.extendee.typeName === typeName) {
        numbers.push(type.number);
      }
    }
    return numbers;
  }
}

/**
 * Answers one reflection stream. Like the reference implementations, a file
 * comes with its transitive imports, and files already sent on this stream
 * are not sent again.
 */
class ReflectionConversation {
  readonly #sent = new Set<string>();

  constructor(private readonly index: DescriptorIndex) {}

  answer(request: ServerReflectionRequest): ServerReflectionResponse {
    const respond = (messageResponse: ResponseInit["messageResponse"]) =>
      create(ServerReflectionResponseSchema, {
        validHost: request.host,
        originalRequest: request,
        messageResponse,
      });
    const error = (code: Code, message: string) =>
      respond({ case: "errorResponse", value: { errorCode: code, errorMessage: message } });
    const files = (file: DescFile | undefined, what: string) =>
      file === undefined
        ? error(Code.NotFound, `${what} not found`)
        : respond({
            case: "fileDescriptorResponse",
            value: { fileDescriptorProto: this.#withImports(file) },
          });

    const question = request.messageRequest;
    switch (question.case) {
      case "listServices":
        return respond({
          case: "listServicesResponse",
          value: { service: this.index.services.map((name) => ({ name })) },
        });
      case "fileByFilename":
        return files(this.index.fileByName(question.value), `file ${question.value}`);
      case "fileContainingSymbol":
        return files(this.index.fileContainingSymbol(question.value), `symbol ${question.value}`);
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = question.value;
        return files(
          this.index.fileContainingExtension(containingType, extensionNumber),
          `extension ${extensionNumber} of ${containingType}`,
        );
      }
      case "allExtensionNumbersOfType": {
        const numbers = this.index.extensionNumbers(question.value);
        return numbers === undefined
          ? error(Code.NotFound, `type ${question.value} not found`)
          : respond({
              case: "allExtensionNumbersResponse",
              value: { baseTypeName: question.value, extensionNumber: numbers },
            });
      }
      default:
        return error(Code.InvalidArgument, "message_request: one request kind must be set");
    }
  }

  /** The file first, then the imports this stream has not seen yet. */
  #withImports(file: DescFile): Uint8Array[] {
    const out: Uint8Array[] = [];
    const visit = (f: DescFile, requested: boolean) => {
      if (!requested && this.#sent.has(f.proto.name)) return;
      this.#sent.add(f.proto.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      for (const dependency of f.dependencies) visit(dependency, false);
    };
    visit(file, true);
    return out;
  }
}

/**
 * grpc.reflection.v1.ServerReflection and its v1alpha twin (still what many
 * tools ask first), for the services `services()` returns when first asked:
 * by then every route is registered.
 */
export function reflectionServices(services: () => readonly DescService[]): {
  v1: ServiceImpl<typeof ServerReflection>;
  v1alpha: ServiceImpl<typeof ServerReflectionV1Alpha>;
} {
  let index: DescriptorIndex | undefined;
  const conversation = () => {
    index ??= new DescriptorIndex(services());
    return new ReflectionConversation(index);
  };
  return {
    v1: {
      async *serverReflectionInfo(requests) {
        const talk = conversation();
        for await (const request of requests) yield talk.answer(request);
      },
    },
    v1alpha: {
      async *serverReflectionInfo(requests) {
        const talk = conversation();
        // The two versions are the same messages on the wire: answer through v1.
        for await (const request of requests) {
          const asV1 = fromBinary(
            ServerReflectionRequestSchema,
            toBinary(RequestSchemaV1Alpha, request),
          );
          yield fromBinary(
            ResponseSchemaV1Alpha,
            toBinary(ServerReflectionResponseSchema, talk.answer(asV1)),
          );
        }
      },
    },
  };
}
