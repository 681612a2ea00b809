#!/usr/bin/env python3
"""Creates Mir's stores on any AWS-compatible endpoint (LocalStack, moto, or AWS).

    .venv/bin/python infra/localstack/bootstrap.py [--endpoint http://localhost:4566]
        [--prefix mir-local] [--timestream] [--print-env]

Tables `<prefix>-twins`, `-schemas`, `-commands`, `-events`, `-telemetry` with the key
schema of the CDK app (pk/sk strings, GSI gsi1 on gsi1pk/gsi1sk projecting all, sparse
GSI gsi2 on gsi2pk/gsi2sk projecting keys, TTL on expiresAt; the contract table of
shared/src/adapters/dynamodb/create.rs), the names `mir local --profile localstack`
uses. With --timestream, also the Timestream database `<prefix>` and table `telemetry`
(magnetic store writes on), skipped with a note when the endpoint does not serve
Timestream (community LocalStack).
Idempotent. Needs boto3 (scripts/moto.sh installs it into .venv).
"""
import argparse
import os
import sys
import time

try:
    import boto3
    from botocore.exceptions import ClientError, EndpointConnectionError
except ImportError:  # pragma: no cover
    sys.exit("boto3 is missing: run scripts/moto.sh install (it installs boto3 into .venv)")

STORES = ["twins", "schemas", "commands", "events", "telemetry"]


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )


def create_table(ddb, name):
    try:
        ddb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[{
                "IndexName": "gsi1",
                "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }, {
                "IndexName": "gsi2",
                "KeySchema": [{"AttributeName": "gsi2pk", "KeyType": "HASH"}, {"AttributeName": "gsi2sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }],
            BillingMode="PAY_PER_REQUEST",
        )
        print(f"created table {name}")
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceInUseException":
            raise
        print(f"table {name} exists")
    for _ in range(120):
        if ddb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE":
            break
        time.sleep(0.5)
    try:
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiresAt"})
    except ClientError as e:
        if "already enabled" not in str(e):
            raise


def create_timestream(endpoint, database, table):
    ts = client("timestream-write", endpoint)
    try:
        ts.create_database(DatabaseName=database)
        print(f"created Timestream database {database}")
    except ClientError as e:
        if e.response["Error"]["Code"] != "ConflictException":
            raise
    except EndpointConnectionError:
        raise
    try:
        ts.create_table(
            DatabaseName=database,
            TableName=table,
            RetentionProperties={"MemoryStoreRetentionPeriodInHours": 24, "MagneticStoreRetentionPeriodInDays": 365},
            MagneticStoreWriteProperties={"EnableMagneticStoreWrites": True},
        )
        print(f"created Timestream table {database}.{table}")
    except ClientError as e:
        if e.response["Error"]["Code"] != "ConflictException":
            raise


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL", "http://localhost:4566"))
    ap.add_argument("--prefix", default="mir-local")
    ap.add_argument("--timestream", action="store_true", help="also create the Timestream database and table")
    ap.add_argument("--print-env", action="store_true", help="print the functions' environment variables")
    args = ap.parse_args()
    ddb = client("dynamodb", args.endpoint)
    for store in STORES:
        create_table(ddb, f"{args.prefix}-{store}")
    sink = "dynamodb"
    if args.timestream:
        try:
            create_timestream(args.endpoint, args.prefix, "telemetry")
            sink = "timestream"
        except Exception as e:  # noqa: BLE001 - any failure here means "not served"
            print(f"note: Timestream not available on {args.endpoint} ({e}); use the dynamodb telemetry sink")
    if args.print_env:
        print(f"export AWS_ENDPOINT_URL={args.endpoint}")
        for store in ["twins", "schemas", "commands", "events"]:
            print(f"export MIR_{store.upper()}_TABLE={args.prefix}-{store}")
        print(f"export MIR_TELEMETRY_SINK={sink}")
        if sink == "timestream":
            print(f"export MIR_TIMESTREAM_DATABASE={args.prefix} MIR_TIMESTREAM_TABLE=telemetry")
        else:
            print(f"export MIR_TELEMETRY_TABLE={args.prefix}-telemetry")


if __name__ == "__main__":
    main()
