"""A real S3 API for the storage tests: moto's server on 127.0.0.1, with credentials checked.

`moto_server` runs in a subprocess of its own session (a test's CLI runs and LanceDB's Rust
client reach it over HTTP, as they would reach S3 or MinIO). Moto checks signatures and access
keys once `INITIAL_NO_AUTH_ACTION_COUNT` unauthenticated calls are spent: the first three make
an IAM user with an access key allowed everything, so a wrong key or secret is refused as AWS
refuses it (InvalidAccessKeyId, SignatureDoesNotMatch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.processes import free_port, kill_group

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str

    def env(self, **extra: str) -> dict[str, str]:
        """The standard AWS environment that reaches this server (no storage settings needed)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": REGION, **extra}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def upload(self, folder: Path, bucket: str, prefix: str) -> None:
        client = self.client()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


@contextmanager
def moto_s3() -> Iterator[S3Server]:
    """moto's S3 on a free loopback port, and an IAM user's key pair (moto makes the secret: 40
    random characters, which a test greps for as it would for a recognisable key)."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/data.json", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on {endpoint}") from None
                time.sleep(0.1)
        import boto3

        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                           aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        iam.create_user(UserName="graphrag-flow")
        key = iam.create_access_key(UserName="graphrag-flow")["AccessKey"]
        iam.put_user_policy(UserName="graphrag-flow", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        kill_group(proc)

