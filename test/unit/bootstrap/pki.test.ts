import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm, stat, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import * as x509 from "@peculiar/x509";
import { apiServerSANs, certSpecs, ensurePki, verifiedBy } from "../../../bootstrap/pki.ts";
import { LabState } from "../../../topology/state.ts";
import { plan } from "../../../topology/plan.ts";
import { LabFile } from "../../../topology/schema.ts";

const lab = LabFile.parse({
  apiVersion: "lab/v1alpha1",
  kind: "Lab",
  metadata: { name: "pki" },
  spec: { network: { cidr: "10.210.0.0/24" } },
});
const p = plan(lab);

let home: string;
let state: LabState;
beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), "lab-pki-"));
  state = new LabState("pki", home);
  await state.ensure();
});
afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

const cert = async (id: string) =>
  new x509.X509Certificate(await readFile(state.path("pki", `${id}.crt`), "utf8"));

describe("PKI", () => {
  it("issues every certificate, each chaining to the right CA, keys 0600", async () => {
    const r = await ensurePki(state, p);
    expect(r.issued).toContain("ca");
    expect(r.issued).toContain("etcd/ca");
    for (const s of certSpecs(p)) {
      const crt = await readFile(state.path("pki", `${s.id}.crt`), "utf8");
      const ca = await readFile(state.path("pki", `${s.ca}.crt`), "utf8");
      expect(await verifiedBy(crt, ca), s.id).toBe(true);
      expect((await stat(state.path("pki", `${s.id}.key`))).mode & 0o777, s.id).toBe(0o600);
    }
    for (const ca of ["ca", "etcd/ca"])
      expect((await stat(state.path("pki", `${ca}.key`))).mode & 0o777).toBe(0o600);
    // Node's clients do not chain to the etcd CA: a node cert cannot talk to etcd.
    const etcdCa = await readFile(state.path("pki", "etcd/ca.crt"), "utf8");
    expect(await verifiedBy(await readFile(state.path("pki", "nodes/worker-1.crt"), "utf8"), etcdCa)).toBe(
      false,
    );
  });

  it("is verified by openssl too (ECDSA P-256, the chain the daemons will check)", async () => {
    const out = execFileSync("openssl", [
      "verify",
      "-CAfile",
      state.path("pki", "ca.crt"),
      "-purpose",
      "sslserver",
      state.path("pki", "apiserver.crt"),
    ]).toString();
    expect(out).toContain(": OK");
    const text = execFileSync("openssl", [
      "x509",
      "-noout",
      "-text",
      "-in",
      state.path("pki", "apiserver.crt"),
    ]).toString();
    expect(text).toContain("ASN1 OID: prime256v1");
  });

  it("gives the apiserver every name clients use", async () => {
    const san = (await cert("apiserver")).getExtension(x509.SubjectAlternativeNameExtension)!;
    const names = san.names.toJSON().map((n) => `${n.type}:${n.value}`);
    for (const m of p.masters) expect(names).toContain(`ip:${m.address}`);
    expect(names).toEqual(
      expect.arrayContaining([
        `ip:${p.network.vip}`,
        "ip:127.0.0.1",
        "ip:10.96.0.1",
        "dns:kubernetes",
        "dns:kubernetes.default",
        "dns:kubernetes.default.svc",
        "dns:kubernetes.default.svc.cluster.local",
      ]),
    );
    expect(apiServerSANs(p).ips).toContain(p.cluster.kubernetesServiceIP);
  });

  it("sets subjects and key usages for each role", async () => {
    const eku = async (id: string) => (await cert(id)).getExtension(x509.ExtendedKeyUsageExtension)!.usages;
    expect(await eku("apiserver")).toEqual([x509.ExtendedKeyUsage.serverAuth]);
    expect(await eku("admin")).toEqual([x509.ExtendedKeyUsage.clientAuth]);
    expect(await eku("etcd/master-1-peer")).toEqual([
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ]);
    expect((await cert("admin")).subject).toBe("CN=lab-admin, O=system:masters");
    expect((await cert("nodes/worker-2")).subject).toBe("CN=system:node:worker-2, O=system:nodes");
    expect((await cert("apiserver-etcd-client")).issuer).toBe((await cert("etcd/ca")).subject);
    const ca = await cert("ca");
    expect(ca.getExtension(x509.BasicConstraintsExtension)!.ca).toBe(true);
    const ku = (await cert("apiserver")).getExtension(x509.KeyUsagesExtension)!.usages;
    expect(ku & x509.KeyUsageFlags.digitalSignature).toBeTruthy();
    expect(ku & x509.KeyUsageFlags.keyCertSign).toBeFalsy();
  });

  it("reuses everything on a rerun, and reissues only what a plan change affects", async () => {
    const before = (await cert("apiserver")).serialNumber;
    const again = await ensurePki(state, p);
    expect(again.issued).toEqual([]);
    expect((await cert("apiserver")).serialNumber).toBe(before);
    const moved = plan(
      LabFile.parse({ ...lab, spec: { ...lab.spec, network: { cidr: "10.210.0.0/24", vip: "10.210.0.9" } } }),
    );
    const r = await ensurePki(state, moved);
    expect(r.issued).toEqual(["apiserver"]);
    expect(
      (await cert("apiserver")).getExtension(x509.SubjectAlternativeNameExtension)!.names.toJSON(),
    ).toContainEqual({
      type: "ip",
      value: "10.210.0.9",
    });
  });
});
