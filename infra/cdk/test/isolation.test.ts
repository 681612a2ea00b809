// One stage per account and region: a second stage refuses to deploy where one is (the
// lock of the data stack has the same physical name in every stage), and one app refuses
// to synthesize two stages for the same explicit account and region.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { buildMirApp } from '../lib/app';
import { STAGE_LOCK_NAME } from '../lib/stage-lock';
import { newApp, PARTS, resourcesOfType, Synth, synth, synthApp } from './helpers';

/** The data stack's lock: [logicalId, resource]. */
function lock(s: Synth): [string, any] {
  const named = PARTS.flatMap((part) => resourcesOfType(s.json[part], 'AWS::SSM::Parameter').map(([id, r]) => ({ part, id, r })));
  assert.equal(named.length, 1, 'one lock per stage');
  assert.equal(named[0].part, 'data', 'in the data stack, the first one deployed');
  return [named[0].id, named[0].r];
}

test('two stages for one account and region cannot both deploy: their locks have the same fixed physical name', () => {
  const dev = synth('default');
  const prod = synthApp(newApp({ 'mir:stage': 'prod' }));
  const [, a] = lock(dev);
  const [, b] = lock(prod);
  assert.equal(a.Properties.Name, STAGE_LOCK_NAME);
  assert.equal(b.Properties.Name, a.Properties.Name, 'CloudFormation refuses the second resource of that name in the account and region');
  assert.equal(typeof a.Properties.Name, 'string', 'a literal, not a generated or stage-derived name');
  // The lock tells who owns the account and region.
  assert.equal(a.Properties.Value, 'dev');
  assert.equal(b.Properties.Value, 'prod');
  assert.match(a.Properties.Description, /Mir stage dev owns this AWS account and region/);
  assert.match(b.Properties.Description, /Mir stage prod owns this AWS account and region/);
});

test('nothing of the data stack is created before the lock: a refused stage leaves no table behind', () => {
  for (const flavour of ['default', 'timestream'] as const) {
    const s = synth(flavour);
    const [lockId] = lock(s);
    const resources = Object.entries<any>(s.json.data.Resources).filter(([id, r]) => id !== lockId && r.Type !== 'AWS::CDK::Metadata');
    assert.ok(resources.length >= 5);
    for (const [id, r] of resources) {
      assert.ok([r.DependsOn ?? []].flat().includes(lockId), `${flavour} ${id} (${r.Type}) does not wait for the lock`);
    }
  }
});

test('the lock is released when the stage is deleted (not retained), unlike the tables', () => {
  const [, r] = lock(synth());
  assert.equal(r.DeletionPolicy, 'Delete');
});

test('one app refuses two stages for the same explicit account and region, naming both', () => {
  const app = newApp();
  const env = { account: '123456789012', region: 'eu-west-1' };
  buildMirApp(app, env, { stage: 'dev' });
  assert.throws(
    () => buildMirApp(app, env, { stage: 'prod' }),
    /stages dev and prod are both synthesized for account 123456789012 region eu-west-1: one Mir stage per account and region/,
  );
});

test('one app may hold two stages in two accounts, or in two regions', () => {
  const app = newApp();
  buildMirApp(app, { account: '111111111111', region: 'eu-west-1' }, { stage: 'dev' });
  buildMirApp(app, { account: '222222222222', region: 'eu-west-1' }, { stage: 'prod' });
  buildMirApp(app, { account: '111111111111', region: 'us-east-1' }, { stage: 'staging' });
  const stacks = app.synth().stacks.map((st) => st.stackName);
  for (const stage of ['dev', 'prod', 'staging']) {
    for (const part of PARTS) assert.ok(stacks.includes(`mir-${stage}-${part}`), `mir-${stage}-${part}`);
  }
});
