// The stateful part: DynamoDB tables and the telemetry store. Everything here is retained
// when the stack is deleted, and no physical name is fixed (a retained resource with a
// fixed name would block the next deployment).
import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as timestream from 'aws-cdk-lib/aws-timestream';
import { Construct } from 'constructs';
import { TelemetrySink } from './config';

export interface DataStackProps extends StackProps {
  readonly telemetrySink: TelemetrySink;
}

export interface TimestreamStore {
  readonly database: timestream.CfnDatabase;
  readonly table: timestream.CfnTable;
  readonly databaseName: string;
  readonly tableName: string;
  readonly tableArn: string;
  readonly rejectedDataBucket: s3.Bucket;
}

/** Key schema shared by every table (single-table style per store). */
export const KEYS = {
  pk: 'pk',
  sk: 'sk',
  gsi: 'gsi1',
  gsiPk: 'gsi1pk',
  gsiSk: 'gsi1sk',
  ttl: 'expiresAt',
} as const;

export class DataStack extends Stack {
  public readonly twins: dynamodb.Table;
  public readonly schemas: dynamodb.Table;
  public readonly commands: dynamodb.Table;
  public readonly events: dynamodb.Table;
  /** Set when the telemetry sink is DynamoDB. */
  public readonly telemetryTable?: dynamodb.Table;
  /** Set when the telemetry sink is Timestream. */
  public readonly timestream?: TimestreamStore;
  public readonly telemetrySink: TelemetrySink;

  constructor(scope: Construct, id: string, props: DataStackProps) {
    super(scope, id, props);
    this.telemetrySink = props.telemetrySink;

    this.twins = this.table('Twins', 'TwinsTable');
    this.schemas = this.table('Schemas', 'SchemasTable');
    this.commands = this.table('Commands', 'CommandsTable');
    this.events = this.table('Events', 'EventsTable');

    new CfnOutput(this, 'TelemetrySink', { value: props.telemetrySink, description: 'timestream or dynamodb' });

    if (props.telemetrySink === 'dynamodb') {
      this.telemetryTable = this.table('Telemetry', 'TelemetryTable');
    } else {
      this.timestream = this.timestreamStore();
      new CfnOutput(this, 'TimestreamDatabase', { value: this.timestream.databaseName });
      new CfnOutput(this, 'TimestreamTable', { value: this.timestream.tableName });
    }
  }

  private table(id: string, outputId: string): dynamodb.Table {
    const table = new dynamodb.Table(this, id, {
      partitionKey: { name: KEYS.pk, type: dynamodb.AttributeType.STRING },
      sortKey: { name: KEYS.sk, type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: KEYS.ttl,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    table.addGlobalSecondaryIndex({
      indexName: KEYS.gsi,
      partitionKey: { name: KEYS.gsiPk, type: dynamodb.AttributeType.STRING },
      sortKey: { name: KEYS.gsiSk, type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
    new CfnOutput(this, outputId, { value: table.tableName });
    return table;
  }

  private timestreamStore(): TimestreamStore {
    // Records that Timestream rejects from magnetic store writes (late data) land here.
    const rejectedDataBucket = new s3.Bucket(this, 'TelemetryRejectedData', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      versioned: false,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ id: 'expire-rejected-records', expiration: Duration.days(365) }],
    });

    const database = new timestream.CfnDatabase(this, 'TelemetryDatabase', {});
    database.applyRemovalPolicy(RemovalPolicy.RETAIN);

    const table = new timestream.CfnTable(this, 'TelemetryTable', {
      databaseName: database.ref,
      retentionProperties: {
        MemoryStoreRetentionPeriodInHours: '24',
        MagneticStoreRetentionPeriodInDays: '365',
      },
      // Devices replay days-old telemetry after an outage: it must be accepted into the magnetic store.
      magneticStoreWriteProperties: {
        EnableMagneticStoreWrites: true,
        MagneticStoreRejectedDataLocation: {
          S3Configuration: {
            BucketName: rejectedDataBucket.bucketName,
            EncryptionOption: 'SSE_S3',
            ObjectKeyPrefix: 'rejected/',
          },
        },
      },
    });
    table.applyRemovalPolicy(RemovalPolicy.RETAIN);

    return {
      database,
      table,
      databaseName: database.ref,
      tableName: table.attrName,
      tableArn: table.attrArn,
      rejectedDataBucket,
    };
  }
}
