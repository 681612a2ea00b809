// The Mir console on AWS, in two concerns:
// - ConsoleSite: a private S3 bucket behind CloudFront (origin access control, HTTPS
//   only, strict security headers), in the api stack, whose CORS names it; and
//   ConsoleDeployment, in the console stack: the built front end (console/dist) and the
//   config.json that tells it where the API and the sign-in are.
// - ConsoleSignIn: operators sign in with the user pool (no self sign-up); a Cognito
//   identity pool turns the sign-in into IAM credentials of the role of the user's
//   group, one per operator job, each carrying that job's managed policy
//   (operator-access.ts). The console signs every API call with SigV4, as the CLI does:
//   the API stays IAM-only.
import * as path from 'node:path';
import { Duration, Fn, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3deploy from 'aws-cdk-lib/aws-s3-deployment';
import { Construct } from 'constructs';
import { Job, JOBS, JOB_DESCRIPTIONS } from './operator-access';
import { findRepoRoot } from './routes';

/** The built front end: produced by console/build.sh and committed. */
export function consoleDistDir(): string {
  return path.join(findRepoRoot(__dirname), 'console', 'dist');
}

/**
 * Group precedence: a user in several groups gets the role of the lowest number
 * (Cognito's `cognito:preferred_role`), so the widest job wins.
 */
export const GROUP_PRECEDENCE: Record<Job, number> = { admin: 0, provisioner: 1, operator: 2, readOnly: 3 };

/** Headers the browser sends on a signed API call (the API's CORS allow list). */
export const SIGNED_REQUEST_HEADERS = ['authorization', 'content-type', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256'];

/**
 * What the pages may call besides their own origin: the API, Cognito Identity and the
 * hosted sign-in of the region. Wildcards within AWS's own domains, because the API's
 * CORS names the distribution, which carries this policy: exact names would be a cycle.
 */
export function consoleConnectSources(region: string): string[] {
  return [
    `https://*.execute-api.${region}.amazonaws.com`,
    `https://cognito-identity.${region}.amazonaws.com`,
    `https://*.auth.${region}.amazoncognito.com`,
  ];
}

export interface ConsoleSiteProps {
  readonly stage: string;
  /** Origins the pages may call besides their own: the API, Cognito's endpoints. */
  readonly connectSources: string[];
}

export class ConsoleSite extends Construct {
  public readonly bucket: s3.Bucket;
  public readonly distribution: cloudfront.Distribution;
  /** `https://<distribution domain>` */
  public readonly origin: string;
  /** `https://<distribution domain>/`: the console's address and its sign-in redirect. */
  public readonly url: string;

  constructor(scope: Construct, id: string, props: ConsoleSiteProps) {
    super(scope, id);
    // Only built files, replaced on every deploy. Retained: the deployment leaves its
    // files on delete, and a bucket with files cannot be deleted.
    this.bucket = new s3.Bucket(this, 'Assets', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const headers = new cloudfront.ResponseHeadersPolicy(this, 'SecurityHeaders', {
      comment: `mir ${props.stage} console: security headers`,
      securityHeadersBehavior: {
        contentSecurityPolicy: {
          override: true,
          contentSecurityPolicy: [
            "default-src 'self'",
            "script-src 'self'",
            // uPlot and the forms set style attributes.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            `connect-src 'self' ${props.connectSources.join(' ')}`,
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
          ].join('; '),
        },
        strictTransportSecurity: { override: true, accessControlMaxAge: Duration.days(365), includeSubdomains: true },
        contentTypeOptions: { override: true },
        frameOptions: { override: true, frameOption: cloudfront.HeadersFrameOption.DENY },
        referrerPolicy: { override: true, referrerPolicy: cloudfront.HeadersReferrerPolicy.NO_REFERRER },
      },
    });
    this.distribution = new cloudfront.Distribution(this, 'Distribution', {
      comment: `mir ${props.stage} console`,
      defaultRootObject: 'index.html',
      priceClass: cloudfront.PriceClass.PRICE_CLASS_100,
      defaultBehavior: {
        origin: origins.S3BucketOrigin.withOriginAccessControl(this.bucket),
        viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
        allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
        responseHeadersPolicy: headers,
      },
    });
    this.origin = `https://${this.distribution.distributionDomainName}`;
    this.url = `${this.origin}/`;
  }

}

export interface ConsoleDeploymentProps {
  readonly site: ConsoleSite;
  /** Written as config.json: where the API and the sign-in are (console/src reads it). */
  readonly config: Record<string, unknown>;
}

/**
 * Uploads console/dist and config.json to the site, and invalidates what must not be
 * served stale. CDK does it with a Lambda function, which lives in the console stack.
 */
export class ConsoleDeployment extends Construct {
  constructor(scope: Construct, id: string, props: ConsoleDeploymentProps) {
    super(scope, id);
    new s3deploy.BucketDeployment(this, 'Files', {
      sources: [s3deploy.Source.asset(consoleDistDir()), s3deploy.Source.jsonData('config.json', props.config)],
      destinationBucket: props.site.bucket,
      distribution: props.site.distribution,
      distributionPaths: ['/index.html', '/config.json'],
      prune: true,
    });
  }
}

export interface ConsoleSignInProps {
  readonly stage: string;
  /** The operators (retained, in the data stack). */
  readonly userPool: cognito.IUserPool;
  /** Where the hosted sign-in sends the user back: the console's URL. */
  readonly callbackUrl: string;
  /** Each job's managed policy (the API's OperatorRoles). */
  readonly policies: ReadonlyMap<Job, iam.IManagedPolicy>;
}

export class ConsoleSignIn extends Construct {
  public readonly client: cognito.UserPoolClient;
  public readonly domain: cognito.UserPoolDomain;
  public readonly identityPool: cognito.CfnIdentityPool;
  /** The role of each job's group, assumed through the identity pool. */
  public readonly roles = new Map<Job, iam.Role>();
  /** `<prefix>.auth.<region>.amazoncognito.com` */
  public readonly domainName: string;

  constructor(scope: Construct, id: string, props: ConsoleSignInProps) {
    super(scope, id);
    const stack = Stack.of(this);
    // In this stack, not as children of the user pool (which is in the data stack and
    // must not depend on the console's address).
    this.client = new cognito.UserPoolClient(this, 'ConsoleClient', {
      userPool: props.userPool,
      // A browser keeps no secret: authorization code with PKCE.
      generateSecret: false,
      authFlows: {},
      oAuth: {
        flows: { authorizationCodeGrant: true },
        scopes: [cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE],
        callbackUrls: [props.callbackUrl],
        logoutUrls: [props.callbackUrl],
      },
      supportedIdentityProviders: [cognito.UserPoolClientIdentityProvider.COGNITO],
      preventUserExistenceErrors: true,
      idTokenValidity: Duration.hours(1),
      accessTokenValidity: Duration.hours(1),
      refreshTokenValidity: Duration.hours(12),
    });
    // The hosted sign-in's prefix must be unique in the region: the tail of this stack's
    // id (a UUID, lower-case hex) makes it so without a fixed name.
    const uuidTail = Fn.select(4, Fn.split('-', Fn.select(2, Fn.split('/', stack.stackId))));
    this.domain = new cognito.UserPoolDomain(this, 'SignInDomain', {
      userPool: props.userPool,
      cognitoDomain: { domainPrefix: Fn.join('-', ['mir', props.stage, uuidTail]) },
    });
    this.domainName = `${this.domain.domainName}.auth.${stack.region}.amazoncognito.com`;

    this.identityPool = new cognito.CfnIdentityPool(this, 'IdentityPool', {
      allowUnauthenticatedIdentities: false,
      allowClassicFlow: false,
      cognitoIdentityProviders: [
        { clientId: this.client.userPoolClientId, providerName: props.userPool.userPoolProviderName, serverSideTokenCheck: true },
      ],
    });
    const assumedBy = () =>
      new iam.WebIdentityPrincipal('cognito-identity.amazonaws.com', {
        StringEquals: { 'cognito-identity.amazonaws.com:aud': this.identityPool.ref },
        'ForAnyValue:StringLike': { 'cognito-identity.amazonaws.com:amr': 'authenticated' },
      });
    // Required by the identity pool; a user without a group gets no credentials at all
    // (ambiguous resolution: deny), and this role may do nothing if ever assumed.
    const noAccess = new iam.Role(this, 'NoAccessRole', {
      assumedBy: assumedBy(),
      description: `mir ${props.stage} console: signed in without an operator group (no permissions)`,
    });
    for (const job of JOBS) {
      const name = job.charAt(0).toUpperCase() + job.slice(1);
      const policy = props.policies.get(job);
      if (!policy) throw new Error(`no managed policy for the ${job} job`);
      const role = new iam.Role(this, `${name}Role`, {
        assumedBy: assumedBy(),
        description: `mir ${props.stage} console, ${job}: ${JOB_DESCRIPTIONS[job]}`.slice(0, 1000),
        managedPolicies: [policy],
        maxSessionDuration: Duration.hours(1),
      });
      this.roles.set(job, role);
      new cognito.CfnUserPoolGroup(this, `${name}Group`, {
        userPoolId: props.userPool.userPoolId,
        groupName: job,
        description: `mir ${props.stage}: ${JOB_DESCRIPTIONS[job]}`.slice(0, 2048),
        precedence: GROUP_PRECEDENCE[job],
        roleArn: role.roleArn,
      });
    }
    new cognito.CfnIdentityPoolRoleAttachment(this, 'Roles', {
      identityPoolId: this.identityPool.ref,
      roles: { authenticated: noAccess.roleArn },
      roleMappings: {
        console: {
          type: 'Token',
          ambiguousRoleResolution: 'Deny',
          identityProvider: `${props.userPool.userPoolProviderName}:${this.client.userPoolClientId}`,
        },
      },
    });
  }
}
