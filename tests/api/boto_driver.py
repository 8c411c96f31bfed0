"""boto3 driven over stdin/stdout, so Rust tests call the real client (tests/api.rs).

One request per line on stdin, one answer per line on stdout:

    request:  OPERATION<TAB>key=value<TAB>key=value...
    answer:   OK<TAB>key=value...              (the response, flattened)
              ERR<TAB>code<TAB>status<TAB>message  (botocore raised ClientError)
              EXC<TAB>text                     (anything else botocore raised: an XML
                                               shape it could not parse, a dropped
                                               connection, a parameter it refused)

OPERATION is the API name (CreateLoadBalancer); the call goes through the public
method (client.create_load_balancer), parameter validation included. Keys are flat
paths into the parameters (`Listeners.0.InstancePort=80`, `Instances.1.InstanceId=i-2`):
a numeric segment is a list index, and each value is converted to the type the
operation's input shape gives that member (integer, boolean, string). The answer
flattens the same way, with `PATH.#=N` for the length of every list, so an empty list
is still visible. Keys starting with `@` choose the client instead of being parameters:
`@unsigned=1` sends no signature, `@creds=AKID:SECRET` signs with those credentials.

Values escape backslash, tab and newline as \\\\, \\t, \\n in both directions.

Environment: CLB_API_ENDPOINT (http://127.0.0.1:PORT). Retries are off, so every
request is sent exactly once and an error is the server's answer, not the last of five;
client-side parameter validation is off, so out-of-range values reach the server.
"""

import datetime
import os
import sys

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["CLB_API_ENDPOINT"]
DEFAULT_CREDS = (
    os.environ.get("AWS_ACCESS_KEY_ID", "AKIDTEST"),
    os.environ.get("AWS_SECRET_ACCESS_KEY", "test-secret"),
)


def unescape(text):
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append({"\\": "\\", "t": "\t", "n": "\n"}.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def escape(text):
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


_clients = {}


def client(unsigned, creds):
    key = (unsigned, creds)
    if key not in _clients:
        config = Config(
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=30,
            signature_version=botocore.UNSIGNED if unsigned else None,
            # Out-of-range values must reach the server: it is clb's validation
            # under test, not botocore's.
            parameter_validation=False,
        )
        akid, secret = creds
        _clients[key] = boto3.session.Session(
            aws_access_key_id=akid,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        ).client("elb", endpoint_url=ENDPOINT, config=config)
    return _clients[key]


def coerce(shape, value):
    kind = shape.type_name if shape is not None else "string"
    if kind in ("integer", "long"):
        return int(value)
    if kind == "boolean":
        if value not in ("true", "false"):
            raise ValueError(f"boolean member given {value!r}")
        return value == "true"
    if kind in ("float", "double"):
        return float(value)
    return value


def child_shape(shape, segment):
    if shape is None:
        return None
    if shape.type_name == "structure":
        return shape.members.get(segment)
    if shape.type_name == "list":
        return shape.member
    if shape.type_name == "map":
        return shape.value
    return None


def unflatten(pairs, input_shape):
    """Builds the nested parameters from flat `a.0.b` paths, typed by the shape."""
    root = {}
    for path, value in pairs:
        segments = path.split(".")
        node, shape = root, input_shape
        for i, seg in enumerate(segments):
            last = i == len(segments) - 1
            nxt_shape = child_shape(shape, seg)
            key = int(seg) if isinstance(node, list) else seg
            if isinstance(node, list):
                while len(node) <= key:
                    node.append(None)
            if last:
                node[key] = coerce(nxt_shape, value)
            else:
                want_list = segments[i + 1].isdigit()
                current = node[key] if isinstance(node, list) else node.get(key)
                if current is None:
                    current = [] if want_list else {}
                    node[key] = current
                node = current
            shape = nxt_shape
    return root


def flatten(value, prefix, out):
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(v, f"{prefix}.{k}" if prefix else k, out)
    elif isinstance(value, list):
        out.append((f"{prefix}.#", str(len(value))))
        for i, v in enumerate(value):
            flatten(v, f"{prefix}.{i}", out)
    elif isinstance(value, bool):
        out.append((prefix, "true" if value else "false"))
    elif isinstance(value, datetime.datetime):
        out.append((prefix, value.isoformat()))
    else:
        out.append((prefix, str(value)))


def handle(line):
    fields = line.rstrip("\n").split("\t")
    operation, pairs = fields[0], []
    unsigned, creds = False, DEFAULT_CREDS
    for field in fields[1:]:
        key, _, value = field.partition("=")
        value = unescape(value)
        if key == "@unsigned":
            unsigned = value == "1"
        elif key == "@creds":
            akid, _, secret = value.partition(":")
            creds = (akid, secret)
        else:
            pairs.append((key, value))
    c = client(unsigned, creds)
    model = c.meta.service_model.operation_model(operation)
    params = unflatten(pairs, model.input_shape)
    method = getattr(c, botocore.xform_name(operation))
    try:
        response = method(**params)
    except ClientError as e:
        error = e.response.get("Error", {})
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return "\t".join(
            [
                "ERR",
                escape(str(error.get("Code", ""))),
                str(status),
                escape(str(error.get("Message", ""))),
            ]
        )
    response.pop("ResponseMetadata", None)
    out = []
    flatten(response, "", out)
    return "\t".join(["OK"] + [f"{k}={escape(v)}" for k, v in out])


def main():
    # The answer to each request is one line, flushed at once: the Rust side reads it
    # before it sends the next request.
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = handle(line)
        except Exception as e:  # noqa: BLE001 - every failure goes back to the test
            answer = "EXC\t" + escape(f"{type(e).__name__}: {e}")
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
