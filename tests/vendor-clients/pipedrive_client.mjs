// pipedrive (npm), Pipedrive's own Node.js client (github.com/pipedrive/client-nodejs),
// against the simulator's Pipedrive: its v2 PersonsApi must accept the
// simulator's answers as it accepts Pipedrive's. Run by tests/e2e
// (vendor_clients) as
//
//     NODE_PATH=$(tests/vendor-clients/setup-js.sh) node pipedrive_client.mjs BASE_URL SCRATCH_DIR
//
// with BASE_URL the simulator's (SCRATCH_DIR is accepted for symmetry with
// the Python scripts; nothing is written there). Exits non-zero on the first
// surprise.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

// ES modules ignore NODE_PATH; require() honours it, and the package's
// `exports` map has a CommonJS entry for "pipedrive/v2".
const require = createRequire(import.meta.url);
const { Configuration, PersonsApi } = require("pipedrive/v2");
// The package's `exports` hide its package.json: find it from the entry point.
const entry = require.resolve("pipedrive/v2");
const root = entry.slice(0, entry.lastIndexOf("/dist/"));
const { version } = JSON.parse(readFileSync(`${root}/package.json`, "utf8"));

const [BASE_ARG, SCRATCH] = process.argv.slice(2);
assert.ok(BASE_ARG && SCRATCH, "usage: node pipedrive_client.mjs BASE_URL SCRATCH_DIR");
const BASE = BASE_ARG.replace(/\/+$/, "");
// The simulator's accepted token (tests/sim: SimConfig::default().tokens).
const TOKEN = "sim-token";

// The client's own configuration: the API token goes out as the
// `x-api-token` header, paths are appended to basePath (its default is
// https://api.pipedrive.com/api/v2).
const persons = new PersonsApi(new Configuration({ apiKey: TOKEN, basePath: `${BASE}/api/v2` }));

const EMAIL = "vendor.pd@example.com";
// Contains EMAIL: only an exact-match search tells them apart.
const OTHER_EMAIL = "other.vendor.pd@example.com";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The shape of the client's `Person` model (models/person.d.ts). */
function assertPerson(p, what) {
  const label = `${what}: ${JSON.stringify(p)}`;
  assert.equal(typeof p, "object", label);
  assert.ok(Number.isInteger(p.id) && p.id > 0, `id: ${label}`);
  for (const key of ["name", "add_time", "update_time"]) {
    assert.equal(typeof p[key], "string", `${key}: ${label}`);
  }
  for (const key of ["first_name", "last_name", "job_title"]) {
    assert.ok(p[key] == null || typeof p[key] === "string", `${key}: ${label}`);
  }
  for (const key of ["owner_id", "visible_to"]) {
    assert.ok(Number.isInteger(p[key]), `${key}: ${label}`);
  }
  assert.ok(p.org_id == null || Number.isInteger(p.org_id), `org_id: ${label}`);
  assert.ok(!Number.isNaN(Date.parse(p.add_time)), `add_time: ${label}`);
  assert.ok(!Number.isNaN(Date.parse(p.update_time)), `update_time: ${label}`);
  assert.equal(p.is_deleted, false, `is_deleted: ${label}`);
  assert.ok(Array.isArray(p.label_ids), `label_ids: ${label}`);
  assert.ok(p.picture_id == null || Number.isInteger(p.picture_id), `picture_id: ${label}`);
  assert.ok(p.custom_fields && typeof p.custom_fields === "object", `custom_fields: ${label}`);
  for (const key of ["emails", "phones"]) {
    assert.ok(Array.isArray(p[key]), `${key}: ${label}`);
    for (const item of p[key]) {
      assert.equal(typeof item.value, "string", `${key}[].value: ${label}`);
      assert.equal(typeof item.primary, "boolean", `${key}[].primary: ${label}`);
      assert.equal(typeof item.label, "string", `${key}[].label: ${label}`);
    }
  }
}

/** The client rejects with Pipedrive's error body (its errorInterceptor). */
async function assertFails(call, code, message) {
  await assert.rejects(call, (e) => {
    assert.equal(e.success, false, JSON.stringify(e));
    assert.equal(e.errorCode, code, JSON.stringify(e));
    assert.match(e.error, message, JSON.stringify(e));
    assert.equal(typeof e.error_info, "string", JSON.stringify(e));
    return true;
  });
}

// Create.
const emails = [{ value: EMAIL, primary: true, label: "work" }];
const phones = [{ value: "+4722334455", primary: true, label: "mobile" }];
const created = await persons.addPerson({
  AddPersonRequest: { name: "Vendor Pipedrive", emails, phones, visible_to: 3 },
});
assert.equal(created.success, true, JSON.stringify(created));
assertPerson(created.data, "addPerson");
const id = created.data.id;
assert.equal(created.data.name, "Vendor Pipedrive");
assert.equal(created.data.first_name, "Vendor");
assert.equal(created.data.last_name, "Pipedrive");
assert.deepEqual(created.data.emails, emails);
assert.deepEqual(created.data.phones, phones);
assert.equal(created.data.visible_to, 3);

// Read back.
const got = await persons.getPerson({ id });
assert.equal(got.success, true, JSON.stringify(got));
assertPerson(got.data, "getPerson");
assert.equal(got.data.id, id);
assert.deepEqual(got.data.emails, emails);
assert.deepEqual(got.data.phones, phones);

// Update (PATCH): given lists replace the old ones, the rest stays.
const newPhones = [
  { value: "+4722334455", primary: false, label: "mobile" },
  { value: "+4799887766", primary: true, label: "work" },
];
const updated = await persons.updatePerson({
  id,
  UpdatePersonRequest: { name: "Vendor Pipedrive-Client", job_title: "CEO", phones: newPhones },
});
assert.equal(updated.success, true, JSON.stringify(updated));
assertPerson(updated.data, "updatePerson");
assert.equal(updated.data.id, id);
assert.equal(updated.data.name, "Vendor Pipedrive-Client");
assert.equal(updated.data.job_title, "CEO");
assert.deepEqual(updated.data.phones, newPhones);
assert.deepEqual(updated.data.emails, emails, "emails not given, so kept");
const reread = await persons.getPerson({ id });
assert.equal(reread.data.name, "Vendor Pipedrive-Client");
assert.equal(reread.data.job_title, "CEO");
assert.deepEqual(reread.data.phones, newPhones);

// Two more persons: one whose email contains EMAIL, one to delete.
const other = await persons.addPerson({
  AddPersonRequest: { name: "Other Vendor", emails: [{ value: OTHER_EMAIL, primary: true, label: "home" }] },
});
assertPerson(other.data, "addPerson (other)");
const doomed = await persons.addPerson({ AddPersonRequest: { name: "Doomed Vendor" } });
assertPerson(doomed.data, "addPerson (doomed)");
assert.deepEqual(doomed.data.emails, []);
assert.equal(new Set([id, other.data.id, doomed.data.id]).size, 3, "three distinct ids");

// List, two to a page, following next_cursor.
const listed = [];
let cursor;
let pages = 0;
do {
  const page = await persons.getPersons({ limit: 2, cursor, sort_by: "id", sort_direction: "asc" });
  assert.equal(page.success, true, JSON.stringify(page));
  assert.ok(Array.isArray(page.data) && page.data.length <= 2, JSON.stringify(page));
  page.data.forEach((p) => assertPerson(p, "getPersons"));
  listed.push(...page.data);
  cursor = page.additional_data?.next_cursor ?? undefined;
  assert.ok(cursor === undefined || typeof cursor === "string", JSON.stringify(page));
  pages += 1;
  assert.ok(pages <= 10, "next_cursor never ran out");
} while (cursor);
assert.equal(pages, 2, "three persons, two to a page");
assert.deepEqual(
  listed.map((p) => p.id),
  [id, other.data.id, doomed.data.id].sort((a, b) => a - b),
);
const mine = listed.find((p) => p.id === id);
assert.equal(mine.job_title, "CEO", "the list shows the update");

// Delete; a missing id is Pipedrive's 404.
const deleted = await persons.deletePerson({ id: doomed.data.id });
assert.equal(deleted.success, true, JSON.stringify(deleted));
assert.equal(deleted.data.id, doomed.data.id);
await assertFails(persons.getPerson({ id: doomed.data.id }), 404, /not found/i);
await assertFails(
  persons.updatePerson({ id: 987654321, UpdatePersonRequest: { job_title: "Ghost" } }),
  404,
  /not found/i,
);

// Search by email, exact match. Pipedrive's search index lags writes (the
// simulator's by 2 s by default), so ask until the person shows up, slower
// than the search limit (10 per 2 s).
const search = (term, exact_match) => persons.searchPersons({ term, fields: "email", exact_match });
let found;
const deadline = Date.now() + 20_000;
for (;;) {
  found = await search(EMAIL, true);
  assert.equal(found.success, true, JSON.stringify(found));
  assert.ok(Array.isArray(found.data?.items), JSON.stringify(found));
  if (found.data.items.length > 0 || Date.now() > deadline) break;
  await sleep(400);
}
assert.equal(found.data.items.length, 1, `exactly the created person: ${JSON.stringify(found)}`);
const [hit] = found.data.items;
assert.equal(typeof hit.result_score, "number", JSON.stringify(hit));
assert.equal(hit.item.id, id);
assert.equal(hit.item.type, "person");
assert.equal(hit.item.name, "Vendor Pipedrive-Client", "a hit carries the current record");
assert.deepEqual(hit.item.emails, [EMAIL]);
assert.ok(hit.item.phones.every((p) => typeof p === "string"), JSON.stringify(hit));
assert.ok(Number.isInteger(hit.item.owner?.id), JSON.stringify(hit));
assert.ok(Number.isInteger(hit.item.visible_to), JSON.stringify(hit));
// Without exact_match the other person's email matches too, once indexed.
let loose;
for (;;) {
  loose = await search(EMAIL, false);
  if (loose.data.items.length > 1 || Date.now() > deadline) break;
  await sleep(400);
}
assert.deepEqual(
  loose.data.items.map((i) => i.item.id).sort((a, b) => a - b),
  [id, other.data.id].sort((a, b) => a - b),
  JSON.stringify(loose),
);
const none = await search("nobody.pd@example.com", true);
assert.deepEqual(none.data.items, [], JSON.stringify(none));

// A bad token is Pipedrive's 401.
const stale = new PersonsApi(new Configuration({ apiKey: "not-a-token", basePath: `${BASE}/api/v2` }));
await assertFails(stale.getPerson({ id }), 401, /unauthorized/i);

console.log(
  `pipedrive ${version} (v2 PersonsApi): addPerson, getPerson, updatePerson, ` +
    `getPersons (${pages} pages by cursor), deletePerson, 404, searchPersons exact/loose, 401: ok`,
);
