"""A gRPC server for the proxy's end-to-end tests, on grpcio's generic handlers (no generated
code; messages are raw bytes):

- /test.Svc/Echo, unary: answers its request; a request b"sleep:<ms>" waits that long first.
- /test.Svc/Upload, client streaming: answers how many messages it received.

Listens on 127.0.0.1 on a free port and prints the port on its first line of output.
"""

import time
from concurrent import futures

import grpc


def same(b):
    return b


def echo(request, context):
    if request.startswith(b"sleep:"):
        time.sleep(int(request[len(b"sleep:"):]) / 1000)
    return request


def upload(requests, context):
    return str(sum(1 for _ in requests)).encode()


def main():
    handler = grpc.method_handlers_generic_handler(
        "test.Svc",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=same, response_serializer=same
            ),
            "Upload": grpc.stream_unary_rpc_method_handler(
                upload, request_deserializer=same, response_serializer=same
            ),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
