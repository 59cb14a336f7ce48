"""Creates the demo's ECS world in the emulator: a cluster and three task definitions whose
emulated containers run a few seconds and exit 0 (see SEQ_EMU_* in sequencer_emulator.py).
Also stores the example batch in S3 (s3://sequencer-demo/nightly-etl.yml)."""
import os
import sys

import boto3

endpoint = os.environ["AWS_ENDPOINT_URL"]
ecs = boto3.client("ecs", endpoint_url=endpoint)
s3 = boto3.client("s3", endpoint_url=endpoint)
ecs.create_cluster(clusterName="etl")
for family, seconds in (("extract", 3), ("transform", 4), ("load", 2)):
    ecs.register_task_definition(
        family=family,
        networkMode="bridge",
        containerDefinitions=[{
            "name": "app",
            "image": f"example/{family}:latest",
            "memory": 512,
            "essential": True,
            "environment": [{"name": "SEQ_EMU_SECONDS", "value": str(seconds)}, {"name": "SEQ_EMU_EXIT_CODE", "value": "0"}],
        }],
    )
s3.create_bucket(Bucket="sequencer-demo")
with open(sys.argv[1], "rb") as batch:
    s3.put_object(Bucket="sequencer-demo", Key="nightly-etl.yml", Body=batch.read())
