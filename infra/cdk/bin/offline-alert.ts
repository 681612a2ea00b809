#!/usr/bin/env node
// The example module's CDK app (lib/offline-alert-stack.ts), beside a deployed stage:
//   npx cdk deploy --app 'node build/bin/offline-alert.js' -c mir:eventBusArn=... \
//     -c mir:apiUrl=... -c mir:apiPolicyArn=... [-c mir:offlineMinutes=5] [-c mir:artifacts=<dir>]
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { OfflineAlertStack } from '../lib/offline-alert-stack';
import { findRepoRoot } from '../lib/routes';

const app = new App();
const need = (key: string): string => {
  const v = app.node.tryGetContext(key);
  if (v === undefined || v === null || String(v).trim() === '') throw new Error(`context ${key} is required (-c ${key}=...)`);
  return String(v);
};
const artifacts = app.node.tryGetContext('mir:artifacts');
new OfflineAlertStack(app, String(app.node.tryGetContext('mir:moduleStackName') ?? 'mir-offline-alert'), {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  eventBusArn: need('mir:eventBusArn'),
  apiUrl: need('mir:apiUrl'),
  apiPolicyArn: need('mir:apiPolicyArn'),
  minutes: Number(app.node.tryGetContext('mir:offlineMinutes') ?? 5),
  manifestPath: path.join(findRepoRoot(__dirname), 'Cargo.toml'),
  artifactsDir: artifacts ? path.resolve(String(artifacts)) : undefined,
});
app.synth();
