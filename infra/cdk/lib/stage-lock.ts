// One stage per AWS account and region, enforced by CloudFormation at deploy time.
//
// Stages do not carry the stage in IoT names: thing names are device ids, topics are
// `mir/{id}/...`, and the rules read `mir/+/...` of the whole account and region. Two
// stages in one account and region would therefore see and touch each other's devices
// (a dev operator could issue a certificate for a prod device id). So a stage owns its
// account and region, and the app makes a second stage there fail to deploy:
//   - at deploy time: the lock below, a resource whose physical name is the same for
//     every stage (deliberately fixed, the only fixed name of the app besides the device
//     policy). CloudFormation refuses to create a second resource with that name
//     ("... already exists"), so the second stage's data stack, the first one deployed,
//     fails before it creates anything else: every other resource of the data stack
//     depends on the lock;
//   - at synth time: buildMirApp refuses to put two stages into one app for the same
//     explicit account and region (see claimAccountRegion below).
import { RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';

/**
 * The lock's physical name: one per account and region, whatever the stage. Its value
 * is the stage that owns the account and region
 * (`aws ssm get-parameter --name /mir/stage-lock` tells which one).
 */
export const STAGE_LOCK_NAME = '/mir/stage-lock';

export interface StageLockProps {
  readonly stage: string;
}

export class StageLock extends Construct {
  public readonly parameter: ssm.StringParameter;

  constructor(scope: Construct, id: string, props: StageLockProps) {
    super(scope, id);
    this.parameter = new ssm.StringParameter(this, 'Parameter', {
      // Fixed on purpose (see the top of this file): the same name in every stage is the lock.
      parameterName: STAGE_LOCK_NAME,
      stringValue: props.stage,
      description:
        `Mir stage ${props.stage} owns this AWS account and region: one Mir stage per account ` +
        'and region, deploy another stage into another account (infra/cdk/README.md)',
      tier: ssm.ParameterTier.STANDARD,
    });
    // Deleting the stage (cdk destroy) frees the account and region for a new stage. The
    // retained tables of a destroyed stage hold data, but no function reads them any more.
    this.parameter.applyRemovalPolicy(RemovalPolicy.DESTROY);
  }
}

const claims = new WeakMap<Construct, Map<string, string>>();

/**
 * Records that `stage` is synthesized into `app` for `stack`'s account and region; throws
 * when another stage of the same app already claimed the same explicit account and region.
 * An environment-agnostic stack (account or region unresolved) claims nothing here: the
 * lock refuses the second stage when it is deployed.
 */
export function claimAccountRegion(app: Construct, stack: Stack, stage: string): void {
  const { account, region } = stack;
  if (Token.isUnresolved(account) || Token.isUnresolved(region)) return;
  const key = `${account}/${region}`;
  const seen = claims.get(app) ?? new Map<string, string>();
  claims.set(app, seen);
  const other = seen.get(key);
  if (other !== undefined && other !== stage) {
    throw new Error(
      `stages ${other} and ${stage} are both synthesized for account ${account} region ${region}: ` +
        'one Mir stage per account and region (devices, topics and rules are not separated by stage); ' +
        'deploy each stage into its own account (infra/cdk/README.md, Deploy to AWS)',
    );
  }
  seen.set(key, stage);
}
