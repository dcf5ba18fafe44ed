/**
 * Who owns which server (ring.ts): bounded loads, one account on one replica, independent of input order, and few
 * servers moved when a replica joins or leaves. The group ids are a StatefulSet's pod names, as deployed.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { accountOf, assign, LOAD_FACTOR } from '../../../src/runtime/group/ring.js';

const PODS = ['mailctl-0', 'mailctl-1', 'mailctl-2', 'mailctl-3'];
const THREE = PODS.slice(0, 3);

/** `count` servers on `accounts` accounts spread over a few hosts (an account has ⌈count/accounts⌉ servers at most). */
function servers(count: number, accounts = count): Map<string, string> {
  const found = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    const a = i % accounts;
    found.set(`imap/s${i}`, accountOf({ host: `mail${a % 7}.example.com`, auth: { user: `user${a}@example.com` } }));
  }
  return found;
}

const loads = (owners: Map<string, string>): Map<string, number> => {
  const found = new Map<string, number>();
  for (const owner of owners.values()) found.set(owner, (found.get(owner) ?? 0) + 1);
  return found;
};

const moved = (before: Map<string, string>, after: Map<string, string>): string[] =>
  [...before].filter(([id, owner]) => after.get(id) !== owner).map(([id]) => id);

test('every server has an owner among the members, and none owns more than ceil(1.25 × the average)', () => {
  for (const [count, members] of [
    [1000, THREE],
    [1000, PODS],
    [20, THREE],
    [7, PODS],
  ] as const) {
    const all = servers(count);
    const owners = assign(members, all);
    assert.is(owners.size, count, `${count} servers on ${members.length}: each owned`);
    for (const owner of owners.values()) assert.ok(members.includes(owner), `${owner} is a member`);
    const limit = Math.ceil((LOAD_FACTOR * count) / members.length);
    for (const [owner, n] of loads(owners))
      assert.ok(n <= limit, `${count} servers on ${members.length}: ${owner} owns ${n} > ${limit}`);
  }
});

test("one account's servers stay on one replica", () => {
  const all = servers(1000, 200); // five servers per account
  const owners = assign(PODS, all);
  const byAccount = new Map<string, Set<string>>();
  for (const [id, account] of all) byAccount.set(account, (byAccount.get(account) ?? new Set()).add(owners.get(id)!));
  assert.is(byAccount.size, 200);
  for (const [account, on] of byAccount)
    assert.is(on.size, 1, `${account.replace('\0', ' ')} on ${[...on].join(', ')}`);
  // the bound still holds with accounts of five
  for (const [owner, n] of loads(owners)) assert.ok(n <= Math.ceil((LOAD_FACTOR * 1000) / 4), `${owner}: ${n}`);
});

test('the result does not depend on the order of the members or the servers', () => {
  const all = servers(500, 300);
  const reference = assign(PODS, all);
  const reversed = new Map([...all].reverse());
  const entries = [...all];
  const shuffled = new Map([...entries.filter((_, i) => i % 2), ...entries.filter((_, i) => !(i % 2))]);
  for (const [members, list] of [
    [[...PODS].reverse(), reversed],
    [[PODS[2]!, PODS[0]!, PODS[3]!, PODS[1]!], shuffled],
    [[...PODS, PODS[0]!], all], // a member named twice counts once
  ] as const)
    assert.equal([...assign(members, list)].sort(), [...reference].sort());
});

test('a fourth replica joining three moves at most 1.3 × the ideal quarter of 1,000 servers, all to itself', () => {
  const all = servers(1000);
  const before = assign(THREE, all);
  const after = assign(PODS, all);
  const ids = moved(before, after);
  console.log(`  join: ${ids.length} of 1000 moved (ideal 250)`);
  assert.ok(ids.length <= 1.3 * 250, `${ids.length} moved`);
  // it takes a fair share, so something must move at all
  assert.ok(ids.length >= 250 / LOAD_FACTOR, `${ids.length} moved`);
  // bounded loads may shift a few accounts between the old replicas too; most moves go to the new one
  const toNew = ids.filter((id) => after.get(id) === PODS[3]).length;
  assert.ok(toNew >= 0.9 * ids.length, `${toNew} of ${ids.length} to the new replica`);
});

test("a replica leaving moves its own servers, and of the others' at most 5 % (bounded loads shifting some)", () => {
  const all = servers(1000);
  const before = assign(PODS, all);
  for (const gone of PODS) {
    const after = assign(
      PODS.filter((p) => p !== gone),
      all,
    );
    const ids = moved(before, after);
    const own = [...before].filter(([, owner]) => owner === gone).map(([id]) => id);
    for (const id of own) assert.ok(ids.includes(id), `${id} of ${gone} moved`);
    const others = ids.length - own.length;
    console.log(`  ${gone} leaves: its ${own.length} moved, and ${others} of the others'`);
    assert.ok(others <= 0.05 * all.size, `${others} servers of other replicas moved`);
  }
});

test('no members: nobody owns anything; no servers: an empty assignment', () => {
  assert.is(assign([], servers(10)).size, 0);
  assert.is(assign(PODS, new Map()).size, 0);
});

test.run();
