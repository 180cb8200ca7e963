"""One gRPC call with grpcio (no generated code), for the proxy's end-to-end tests.

usage: client.py ADDR AUTHORITY CALL DEADLINE_S

CALL is "echo:<request>" (unary /test.Svc/Echo) or "upload:<messages>,<seconds between>"
(client streaming /test.Svc/Upload). Prints one JSON line: the status code's name as grpcio
reports it, its details (the answer on success) and the seconds the call took.
"""

import json
import sys
import time

import grpc


def same(b):
    return b


def main():
    addr, authority, call, deadline = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    options = [("grpc.default_authority", authority), ("grpc.enable_http_proxy", 0)]
    with grpc.insecure_channel(addr, options=options) as channel:
        start = time.monotonic()
        try:
            kind, arg = call.split(":", 1)
            if kind == "echo":
                method = channel.unary_unary(
                    "/test.Svc/Echo", request_serializer=same, response_deserializer=same
                )
                answer = method(arg.encode(), timeout=deadline)
            elif kind == "upload":
                count, every = arg.split(",")

                def messages():
                    for _ in range(int(count)):
                        time.sleep(float(every))
                        yield b"part"

                method = channel.stream_unary(
                    "/test.Svc/Upload", request_serializer=same, response_deserializer=same
                )
                answer = method(messages(), timeout=deadline)
            else:
                raise SystemExit(f"unknown call {call!r}")
            out = {"code": "OK", "details": answer.decode()}
        except grpc.RpcError as e:
            out = {"code": e.code().name, "details": e.details()}
        out["seconds"] = time.monotonic() - start
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
