#!/usr/bin/env node
// The CDK app entry point (cdk.json runs the compiled build/bin/mir.js).
//   npx cdk synth                                  builds every function with cargo lambda
//   npx cdk synth -c mir:artifacts=../../target/lambda   uses prebuilt bootstrap binaries
//   -c mir:stage=prod  -c mir:telemetrySink=dynamodb
import { App } from 'aws-cdk-lib';
import { buildMirApp } from '../lib/app';

const app = new App();
buildMirApp(app, {
  account: process.env.CDK_DEFAULT_ACCOUNT,
  region: process.env.CDK_DEFAULT_REGION,
});
app.synth();
