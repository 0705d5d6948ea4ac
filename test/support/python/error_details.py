"""Calls one RPC with Python grpcio, as a user of generic gRPC tooling would,
and prints what its error carries as JSON: the status code, and each detail of
the grpc-status-details-bin trailer decoded as the public google.rpc messages.

Usage: error_details.py ADDRESS AUTHORIZATION DESCRIPTOR_SET METHOD REQUEST_JSON
(METHOD like receipts.v1.ReadReceiptService/GetReceipts; the descriptor set is
`buf build -o` of proto/, so that no generated Python code is needed.)
"""

import json
import sys

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, json_format, message_factory

address, authorization, descriptor_set, method, request_json = sys.argv[1:6]

pool = descriptor_pool.DescriptorPool()
files = descriptor_pb2.FileDescriptorSet.FromString(open(descriptor_set, "rb").read())
for file in files.file:
    pool.Add(file)
if "google/protobuf/any.proto" not in {file.name for file in files.file}:
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)

# google.rpc.Status as googleapis defines it (google/rpc/status.proto), which
# this service does not ship: the envelope gRPC puts in grpc-status-details-bin.
status_file = descriptor_pb2.FileDescriptorProto(
    name="google/rpc/status.proto", package="google.rpc", syntax="proto3",
    dependency=["google/protobuf/any.proto"])
status = status_file.message_type.add(name="Status")
status.field.add(name="code", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
                 label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
status.field.add(name="message", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                 label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
status.field.add(name="details", number=3, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                 type_name=".google.protobuf.Any",
                 label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
pool.Add(status_file)


def message_class(name):
    descriptor = pool.FindMessageTypeByName(name)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf 4.22 and later
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


service, rpc = method.split("/")
descriptor = pool.FindServiceByName(service).FindMethodByName(rpc)
request_class = message_class(descriptor.input_type.full_name)
response_class = message_class(descriptor.output_type.full_name)
request = json_format.Parse(request_json, request_class())

channel = grpc.insecure_channel(address)
call = channel.unary_unary(
    "/" + method,
    request_serializer=lambda m: m.SerializeToString(),
    response_deserializer=response_class.FromString,
)
metadata = [("authorization", authorization)] if authorization else []
try:
    call(request, metadata=metadata, timeout=10)
    print(json.dumps({"code": "OK"}))
    sys.exit(0)
except grpc.RpcError as error:
    result = {"code": error.code().name, "details": []}
    for key, value in error.trailing_metadata() or []:
        if key == "grpc-status-details-bin":
            decoded = message_class("google.rpc.Status").FromString(value)
            result["statusCode"] = decoded.code
            for any_detail in decoded.details:
                type_name = any_detail.type_url.split("/")[-1]
                detail = message_class(type_name)()
                any_detail.Unpack(detail)
                result["details"].append(
                    {"type": type_name, "value": json_format.MessageToDict(detail)})
    print(json.dumps(result))
