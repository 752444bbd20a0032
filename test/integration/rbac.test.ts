/**
 * Workload identity and RBAC as kubectl 1.32 sees them, on real etcd + lab-server: the default
 * ClusterRoles, `kubectl auth can-i` (and `--list`, `-n`, `--as`) for an admin, a service account
 * before and after a RoleBinding and a node, ClusterRole aggregation, `kubectl create token` and
 * requests with that bearer token (allowed, denied, tampered, expired).
 */
import { setMaxListeners } from "node:events";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { V1ClusterRole, V1Namespace, V1Pod, V1ServiceAccount } from "@kubernetes/client-node";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApiStatusError } from "../../api/client.ts";
import { LabClient } from "../../api/client.ts";
import { Informer } from "../../api/informer.ts";
import { clientListWatch } from "../../api/list-watch.ts";
import { ClusterRoleAggregationController } from "../../controlplane/controllers/clusterrole-aggregation.ts";
import { RootCaPublisher } from "../../controlplane/controllers/root-ca.ts";
import { ServiceAccountsController } from "../../controlplane/controllers/serviceaccounts.ts";
import { clientWriter } from "../../controlplane/lab-client-loops.ts";
import { apiObjectSource, fetchPodObjects } from "../../node/volumes/manager.ts";
import { containerMounts, podVolumeSetups } from "../../node/volumes/plan.ts";
import { kubeconfigYaml, startTestApiServer, type TestApiServer } from "../helpers/test-apiserver.ts";
import { identity, rawRequest, type RawResponse } from "../helpers/raw-https.ts";
import { until } from "../helpers/until.ts";

let s: TestApiServer;
let dir: string;
let nodeKubeconfig: string;
let client: LabClient;
const loops = new AbortController();
let loopsDone: Promise<unknown> = Promise.resolve();
const SA = "system:serviceaccount:default:default";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function kubectlWith(kubeconfig: string, ...args: string[]): Promise<Run> {
  const r = await execa("/usr/bin/kubectl", args, {
    env: { KUBECONFIG: kubeconfig, HOME: dir },
    reject: false,
    timeout: 60_000,
  });
  if (r.timedOut) throw new Error(`kubectl ${args.join(" ")} did not finish within 60 s`);
  return { code: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const kubectl = (...args: string[]): Promise<Run> => kubectlWith(s.kubeconfig, ...args);

async function ok(...args: string[]): Promise<string> {
  const r = await kubectl(...args);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** `kubectl auth can-i ...`: "yes" (exit 0) or "no" (exit 1), anything else is a failure. */
async function canI(kubeconfig: string, ...args: string[]): Promise<"yes" | "no"> {
  const r = await kubectlWith(kubeconfig, "auth", "can-i", ...args);
  const answer = r.stdout.trim();
  if (r.code === 0 && answer === "yes") return "yes";
  if (r.code === 1 && answer === "no") return "no";
  throw new Error(
    `kubectl auth can-i ${args.join(" ")}: exit ${r.code}, stdout ${r.stdout}, stderr ${r.stderr}`,
  );
}

/** A kubeconfig that authenticates with a bearer token only (no client certificate). */
async function tokenKubeconfig(name: string, token: string): Promise<string> {
  const file = join(dir, `${name}.kubeconfig`);
  await writeFile(
    file,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: lab",
      "  cluster:",
      `    server: ${s.url}`,
      `    certificate-authority: ${s.pki.caCert}`,
      "users:",
      "- name: sa",
      "  user:",
      `    token: ${token}`,
      "contexts:",
      "- name: lab",
      "  context:",
      "    cluster: lab",
      "    user: sa",
      "    namespace: default",
      "current-context: lab",
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
  return file;
}

function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;
}

async function apply(yaml: string): Promise<Run> {
  const file = join(dir, `apply-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(file, yaml);
  return kubectl("apply", "-f", file);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lab-rbac-"));
  s = await startTestApiServer();
  const node = await s.pki.client("node1", "system:node:node1", ["system:nodes"]);
  nodeKubeconfig = join(dir, "node1.kubeconfig");
  await writeFile(nodeKubeconfig, kubeconfigYaml(s.url, s.pki.caCert, node.cert, node.key, "node1"));
  client = await LabClient.fromKubeconfig(s.kubeconfig);
  setMaxListeners(0, loops.signal);
  // The controller manager's ServiceAccounts controller alone, over HTTPS like in a lab.
  const lw = clientListWatch(client);
  const namespaces = new Informer<V1Namespace>(lw("namespaces"));
  const accounts = new Informer<V1ServiceAccount>(lw("serviceaccounts"));
  const clusterRoles = new Informer<V1ClusterRole>(lw("clusterroles"));
  const running = [namespaces.run(loops.signal), accounts.run(loops.signal), clusterRoles.run(loops.signal)];
  await Promise.all([namespaces.waitForSync(), accounts.waitForSync(), clusterRoles.waitForSync()]);
  loopsDone = Promise.all([
    ...running,
    new ServiceAccountsController(namespaces, accounts, clientWriter(client)).run(loops.signal),
    new ClusterRoleAggregationController(clusterRoles, clientWriter(client)).run(loops.signal),
    new RootCaPublisher(namespaces, clientWriter(client), await readFile(s.pki.caCert, "utf8")).run(
      loops.signal,
    ),
  ]);
}, 120_000);

afterAll(async () => {
  loops.abort();
  await loopsDone.catch(() => undefined);
  await s?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("default policy", () => {
  it("creates the bootstrap ClusterRoles and bindings, printed as upstream", async () => {
    const roles = await ok("get", "clusterroles");
    expect(roles.split("\n")[0]).toMatch(/^NAME\s+CREATED AT$/);
    for (const r of ["cluster-admin", "admin", "edit", "view", "system:basic-user"])
      expect(roles).toMatch(new RegExp(`^${r}\\s+\\d{4}-\\d\\d-\\d\\dT`, "m"));
    const binding = await ok("get", "clusterrolebinding", "cluster-admin", "-o", "wide");
    expect(binding.split("\n")[0]).toMatch(/^NAME\s+ROLE\s+AGE\s+USERS\s+GROUPS\s+SERVICEACCOUNTS$/);
    expect(binding).toMatch(/^cluster-admin\s+ClusterRole\/cluster-admin\s+\S+\s+system:masters/m);
  });

  it("rejects a binding to an unknown role kind with a Status naming the field", async () => {
    const r = await apply(
      [
        "apiVersion: rbac.authorization.k8s.io/v1",
        "kind: RoleBinding",
        "metadata: {name: bad, namespace: default}",
        "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Foo, name: edit}",
        "subjects: [{kind: User, name: alice}]",
      ].join("\n"),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      'RoleBinding "bad" is invalid: roleRef.kind: Unsupported value: "Foo": supported values: "Role", "ClusterRole"',
    );
  });
});

describe("kubectl auth can-i", () => {
  it("answers yes to everything for the admin (system:masters)", async () => {
    expect(await canI(s.kubeconfig, "delete", "pods")).toBe("yes");
    expect(await canI(s.kubeconfig, "*", "*")).toBe("yes");
    expect(await canI(s.kubeconfig, "create", "clusterrolebindings")).toBe("yes");
  });

  it("holds a node to the Node authorizer", async () => {
    expect(await canI(nodeKubeconfig, "get", "nodes")).toBe("yes");
    expect(await canI(nodeKubeconfig, "list", "pods", "--all-namespaces")).toBe("yes");
    expect(await canI(nodeKubeconfig, "create", "deployments")).toBe("no");
    expect(await canI(nodeKubeconfig, "list", "secrets")).toBe("no");
  });

  it("gives the default service account nothing until a RoleBinding to edit, then only in that namespace", async () => {
    await until(
      "the ServiceAccounts controller to create default/default",
      async () => (await kubectl("get", "sa", "default", "-n", "default")).code === 0,
      20_000,
    );
    expect(await canI(s.kubeconfig, "delete", "pods", `--as=${SA}`)).toBe("no");
    expect(await canI(s.kubeconfig, "list", "pods", `--as=${SA}`)).toBe("no");
    await ok(
      "create",
      "rolebinding",
      "sa-edit",
      "--clusterrole=edit",
      "--serviceaccount=default:default",
      "-n",
      "default",
    );
    expect(await canI(s.kubeconfig, "delete", "pods", `--as=${SA}`)).toBe("yes");
    expect(await canI(s.kubeconfig, "create", "deployments.apps", `--as=${SA}`)).toBe("yes");
    expect(await canI(s.kubeconfig, "delete", "pods", `--as=${SA}`, "-n", "kube-system")).toBe("no");
    expect(await canI(s.kubeconfig, "create", "rolebindings", `--as=${SA}`)).toBe("no");
    expect(await canI(s.kubeconfig, "get", "nodes", `--as=${SA}`)).toBe("no");
  });

  it("lists the service account's rules with --list", async () => {
    const r = await kubectl("auth", "can-i", "--list", `--as=${SA}`, "-n", "default");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split("\n")[0]).toMatch(/^Resources\s+Non-Resource URLs\s+Resource Names\s+Verbs$/);
    expect(r.stdout).toMatch(
      /^selfsubjectaccessreviews\.authorization\.k8s\.io\s+\[\]\s+\[\]\s+\[create\]$/m,
    );
    expect(r.stdout).toMatch(
      /^pods\s+\[\]\s+\[\]\s+\[create delete deletecollection patch update get list watch\]$/m,
    );
    expect(r.stdout).toMatch(/^\s+\[\/api\/\*\]\s+\[\]\s+\[get\]$/m);
    const elsewhere = await kubectl("auth", "can-i", "--list", `--as=${SA}`, "-n", "kube-system");
    expect(elsewhere.stdout).not.toMatch(/^pods\s/m);
  });

  it("adds the rules of a ClusterRole labelled aggregate-to-edit to edit (and admin)", async () => {
    expect(await canI(s.kubeconfig, "create", "leases.coordination.k8s.io", `--as=${SA}`)).toBe("no");
    const r = await apply(
      [
        "apiVersion: rbac.authorization.k8s.io/v1",
        "kind: ClusterRole",
        "metadata:",
        "  name: leases-editor",
        "  labels: {rbac.authorization.k8s.io/aggregate-to-edit: 'true'}",
        "rules:",
        "- {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [create, get]}",
      ].join("\n"),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(await canI(s.kubeconfig, "create", "leases.coordination.k8s.io", `--as=${SA}`)).toBe("yes");
    expect(await canI(s.kubeconfig, "delete", "leases.coordination.k8s.io", `--as=${SA}`)).toBe("no");
    // The aggregation controller writes the union into edit, and through edit into admin.
    const leases = { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create", "get"] };
    for (const role of ["edit", "admin"])
      await until(
        `the aggregation controller to add the leases rule to ${role}`,
        async () => {
          const got = JSON.parse(await ok("get", "clusterrole", role, "-o", "json")) as { rules?: unknown[] };
          return (got.rules ?? []).some((r) => JSON.stringify(r) === JSON.stringify(leases));
        },
        20_000,
      );
    const view = JSON.parse(await ok("get", "clusterrole", "view", "-o", "json")) as { rules?: unknown[] };
    expect(view.rules?.length).toBeGreaterThan(5);
    expect(view.rules?.some((r) => JSON.stringify(r) === JSON.stringify(leases))).toBe(false);
  });

  it("refuses impersonation to a caller without the impersonate verb", async () => {
    const token = (await ok("create", "token", "default")).trim();
    const kc = await tokenKubeconfig("sa-imp", token);
    const r = await kubectlWith(kc, "get", "pods", "--as=alice");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(
      `users "alice" is forbidden: User "${SA}" cannot impersonate resource "users" in API group "" at the cluster scope`,
    );
  });
});

describe("escalation prevention", () => {
  const ADMIN_SA = "system:serviceaccount:esc:default";
  const GROUPS = '["system:serviceaccounts" "system:serviceaccounts:esc" "system:authenticated"]';

  it("lets a namespace admin hand out edit but not cluster-admin, and write only roles within its rights", async () => {
    await ok("create", "namespace", "esc");
    await ok(
      "create",
      "rolebinding",
      "esc-admin",
      "--clusterrole=admin",
      "--serviceaccount=esc:default",
      "-n",
      "esc",
    );
    const as = `--as=${ADMIN_SA}`;
    const edit = await kubectl(
      "create",
      "rolebinding",
      "dev-edit",
      "--clusterrole=edit",
      "--user=dev",
      "-n",
      "esc",
      as,
    );
    expect(edit.code, edit.stderr).toBe(0);
    const root = await kubectl(
      "create",
      "rolebinding",
      "dev-root",
      "--clusterrole=cluster-admin",
      "--user=dev",
      "-n",
      "esc",
      as,
    );
    expect(root.code).not.toBe(0);
    expect(root.stderr).toContain(
      `rolebindings.rbac.authorization.k8s.io "dev-root" is forbidden: user "${ADMIN_SA}" (groups=${GROUPS}) is attempting to grant RBAC permissions not currently held:\n{APIGroups:["*"], Resources:["*"], Verbs:["*"]}\n{NonResourceURLs:["*"], Verbs:["*"]}`,
    );
    const podsRole = await kubectl(
      "create",
      "role",
      "pod-reader",
      "--verb=get,list",
      "--resource=pods",
      "-n",
      "esc",
      as,
    );
    expect(podsRole.code, podsRole.stderr).toBe(0);
    const nodesRole = await kubectl(
      "create",
      "role",
      "node-reader",
      "--verb=get",
      "--resource=nodes",
      "-n",
      "esc",
      as,
    );
    expect(nodesRole.code).not.toBe(0);
    expect(nodesRole.stderr).toContain(
      `roles.rbac.authorization.k8s.io "node-reader" is forbidden: user "${ADMIN_SA}" (groups=${GROUPS}) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}`,
    );
    // Nothing of the refused writes was stored; the admin (system:masters) may write anything.
    expect((await kubectl("get", "rolebinding", "dev-root", "-n", "esc")).code).not.toBe(0);
    expect(
      (
        await kubectl(
          "create",
          "rolebinding",
          "dev-root",
          "--clusterrole=cluster-admin",
          "--user=dev",
          "-n",
          "esc",
        )
      ).code,
    ).toBe(0);
  });

  it("lets a holder of the bind verb bind a role it does not hold", async () => {
    const r = await apply(
      [
        "apiVersion: rbac.authorization.k8s.io/v1",
        "kind: Role",
        "metadata: {name: binder, namespace: esc}",
        "rules:",
        "- {apiGroups: [rbac.authorization.k8s.io], resources: [rolebindings], verbs: [create]}",
        "- {apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [bind], resourceNames: [view]}",
      ].join("\n"),
    );
    expect(r.code, r.stderr).toBe(0);
    await ok("create", "serviceaccount", "binder", "-n", "esc");
    await ok("create", "rolebinding", "binder", "--role=binder", "--serviceaccount=esc:binder", "-n", "esc");
    const as = "--as=system:serviceaccount:esc:binder";
    const view = await kubectl(
      "create",
      "rolebinding",
      "v",
      "--clusterrole=view",
      "--user=x",
      "-n",
      "esc",
      as,
    );
    expect(view.code, view.stderr).toBe(0);
    const editB = await kubectl(
      "create",
      "rolebinding",
      "e",
      "--clusterrole=edit",
      "--user=x",
      "-n",
      "esc",
      as,
    );
    expect(editB.code).not.toBe(0);
    expect(editB.stderr).toContain(
      'rolebindings.rbac.authorization.k8s.io "e" is forbidden: user "system:serviceaccount:esc:binder"',
    );
  });
});

describe("service-account tokens", () => {
  it("kubectl create token prints a JWT with upstream's claims", async () => {
    const token = (await ok("create", "token", "default")).trim();
    expect(token.split(".")).toHaveLength(3);
    const header = JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString()) as Record<
      string,
      unknown
    >;
    expect(header.alg).toBe("ES256");
    const c = claimsOf(token);
    expect(c.sub).toBe(SA);
    expect(c.iss).toBe("https://kubernetes.default.svc.cluster.local");
    expect(c.aud).toEqual(["https://kubernetes.default.svc.cluster.local"]);
    expect((c.exp as number) - (c.iat as number)).toBe(3600);
    const sa = JSON.parse(await ok("get", "sa", "default", "-o", "json")) as { metadata: { uid: string } };
    expect(c["kubernetes.io"]).toEqual({
      namespace: "default",
      serviceaccount: { name: "default", uid: sa.metadata.uid },
    });
    const short = claimsOf((await ok("create", "token", "default", "--duration=10m")).trim());
    expect((short.exp as number) - (short.iat as number)).toBe(600);
    const tooShort = await kubectl("create", "token", "default", "--duration=1m");
    expect(tooShort.code).not.toBe(0);
    expect(tooShort.stderr).toContain(
      "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes",
    );
    const missing = await kubectl("create", "token", "nobody");
    expect(missing.stderr).toContain('serviceaccounts "nobody" not found');
  });

  it("authenticates the bearer token as the service account, authorized by RBAC", async () => {
    const token = (await ok("create", "token", "default")).trim();
    const kc = await tokenKubeconfig("sa", token);
    const pods = await kubectlWith(kc, "get", "pods");
    expect(pods.code, pods.stderr).toBe(0);
    expect(pods.stderr).toContain("No resources found in default namespace.");
    const denied = await kubectlWith(kc, "get", "secrets", "-n", "kube-system");
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain(
      `secrets is forbidden: User "${SA}" cannot list resource "secrets" in API group "" in the namespace "kube-system"`,
    );
    expect(await canI(kc, "delete", "pods")).toBe("yes");
    expect(await canI(kc, "get", "nodes")).toBe("no");
    const whoami = await kubectlWith(kc, "auth", "whoami");
    expect(whoami.code, whoami.stderr).toBe(0);
    expect(whoami.stdout).toMatch(new RegExp(`^Username\\s+${SA}$`, "m"));
    expect(whoami.stdout).toMatch(
      /^Groups\s+\[system:serviceaccounts system:serviceaccounts:default system:authenticated\]$/m,
    );
  });

  it("answers TokenReview for the admin: authenticated for a good token, not for a bad one", async () => {
    const token = (await ok("create", "token", "default")).trim();
    const review = async (t: string): Promise<Record<string, unknown>> => {
      const file = join(dir, `review-${Math.random().toString(36).slice(2)}.yaml`);
      await writeFile(
        file,
        `apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec: {token: "${t}"}\n`,
      );
      return (JSON.parse(await ok("create", "-f", file, "-o", "json")) as { status: Record<string, unknown> })
        .status;
    };
    expect(await review(token)).toMatchObject({ authenticated: true, user: { username: SA } });
    expect(await review(`${token}x`)).toMatchObject({ authenticated: false });
  });

  it("answers 401 to a tampered, an expired, a foreign and an orphaned token", async () => {
    const token = (await ok("create", "token", "default")).trim();
    const [h, p, sig] = token.split(".");
    const claims = claimsOf(token);
    const forged = Buffer.from(
      JSON.stringify({ ...claims, sub: "system:serviceaccount:kube-system:default" }),
    ).toString("base64url");
    const sa = JSON.parse(await ok("get", "sa", "default", "-o", "json")) as { metadata: { uid: string } };
    const expired = s.server.tokens.issue({
      namespace: "default",
      name: "default",
      uid: sa.metadata.uid,
      audiences: [],
      expirationSeconds: 600,
      now: Math.floor(Date.now() / 1000) - 3600,
    }).token;
    await ok("create", "serviceaccount", "shortlived");
    const orphan = (await ok("create", "token", "shortlived")).trim();
    // Authenticated while its service account exists (denied by RBAC, not refused as unknown).
    expect(await canI(await tokenKubeconfig("orphan-before", orphan), "get", "pods")).toBe("no");
    await ok("delete", "serviceaccount", "shortlived");
    const cases: Record<string, string> = {
      tampered: `${h}.${forged}.${sig}`,
      "bad signature": `${h}.${p}.${sig!.slice(0, -4)}AAAA`,
      expired,
      "not a jwt": "abc",
      orphan,
    };
    for (const [name, bad] of Object.entries(cases)) {
      const r = await kubectlWith(await tokenKubeconfig(name.replace(/ /g, "-"), bad), "get", "pods");
      expect(r.code, name).not.toBe(0);
      expect(r.stderr, name).toContain("error: You must be logged in to the server (Unauthorized)");
    }
    // The server answers on: the good token still works.
    expect((await kubectlWith(await tokenKubeconfig("still", token), "get", "pods")).code).toBe(0);
  });
});

describe("pod-bound tokens for the node agent", () => {
  it("gives a node a token bound to its own pod, which authenticates until the pod goes", async () => {
    const podYaml = (name: string, node: string) =>
      [
        "apiVersion: v1",
        "kind: Pod",
        `metadata: {name: ${name}, namespace: default}`,
        `spec: {nodeName: ${node}, containers: [{name: c, image: busybox}]}`,
      ].join("\n");
    expect((await apply(podYaml("mine", "node1"))).code).toBe(0);
    expect((await apply(podYaml("theirs", "node2"))).code).toBe(0);
    const mine = (await client.get("pods", "mine", "default")) as V1Pod;
    const nodeClient = await LabClient.fromKubeconfig(nodeKubeconfig);
    const source = apiObjectSource(nodeClient);
    const token = await source.serviceAccountToken!(mine, { path: "token", expirationSeconds: 3607 });
    const c = claimsOf(token);
    expect(c.sub).toBe(SA);
    expect((c["kubernetes.io"] as { pod: unknown }).pod).toEqual({ name: "mine", uid: mine.metadata!.uid });
    expect((c.exp as number) - (c.iat as number)).toBe(3607);
    // The agent keeps the token until 80% of its life: the same one for the next sync.
    expect(await source.serviceAccountToken!(mine, { path: "token", expirationSeconds: 3607 })).toBe(token);
    const kc = await tokenKubeconfig("pod-bound", token);
    expect(await canI(kc, "delete", "pods")).toBe("yes");

    // NodeRestriction: only tokens bound to a pod of this node.
    const theirs = (await client.get("pods", "theirs", "default")) as V1Pod;
    const denied = await nodeClient
      .createToken("default", "default", {
        boundObjectRef: { kind: "Pod", name: "theirs", uid: theirs.metadata!.uid! },
      })
      .catch((err: unknown) => err as ApiStatusError);
    expect((denied as ApiStatusError).code).toBe(403);
    expect((denied as ApiStatusError).message).toContain(
      'serviceaccounts "default" is forbidden: User "system:node:node1" cannot create resource "serviceaccounts/token" in API group "" in the namespace "default": node requested token bound to a pod scheduled on a different node',
    );
    const unbound = await nodeClient
      .createToken("default", "default", {})
      .catch((err: unknown) => err as ApiStatusError);
    expect((unbound as ApiStatusError).message).toContain("node requested token not bound to a pod");
    const otherSa = await nodeClient
      .createToken("default", "shortlived-2", {
        boundObjectRef: { kind: "Pod", name: "mine", uid: mine.metadata!.uid! },
      })
      .catch((err: unknown) => err as ApiStatusError);
    expect((otherSa as ApiStatusError).message).toContain(
      "no relationship found between node 'node1' and this object",
    );

    await ok("delete", "pod", "mine", "--grace-period=0", "--force");
    await until(
      "the pod-bound token to be refused once its pod is gone",
      async () => (await kubectlWith(kc, "get", "pods")).stderr.includes("(Unauthorized)"),
      20_000,
    );
  });
});

describe("automountServiceAccountToken", () => {
  const pod = (name: string, extra = "") =>
    [
      "apiVersion: v1",
      "kind: Pod",
      `metadata: {name: ${name}, namespace: default}`,
      `spec: {nodeName: node1, ${extra} containers: [{name: c, image: busybox}], initContainers: [{name: i, image: busybox}]}`,
    ].join("\n");

  it("mounts token, ca.crt and namespace at /var/run/secrets/kubernetes.io/serviceaccount, as lab-agent writes them", async () => {
    await until(
      "the root CA publisher to make default/kube-root-ca.crt",
      async () => (await kubectl("get", "configmap", "kube-root-ca.crt", "-n", "default")).code === 0,
      20_000,
    );
    expect((await apply(pod("mounted"))).code).toBe(0);
    const p = (await client.get("pods", "mounted", "default")) as V1Pod;
    expect(p.spec?.serviceAccountName).toBe("default");
    const vol = p.spec?.volumes?.find((v) => v.name.startsWith("kube-api-access-"));
    expect(vol?.name).toMatch(/^kube-api-access-[a-z0-9]{5}$/);
    expect(vol?.projected?.sources?.[0]).toEqual({
      serviceAccountToken: { expirationSeconds: 3607, path: "token" },
    });
    for (const c of [...(p.spec?.containers ?? []), ...(p.spec?.initContainers ?? [])])
      expect(c.volumeMounts).toEqual([
        { name: vol!.name, readOnly: true, mountPath: "/var/run/secrets/kubernetes.io/serviceaccount" },
      ]);
    // What lab-agent on node1 does before it starts the container (as the node, over HTTPS).
    const nodeClient = await LabClient.fromKubeconfig(nodeKubeconfig);
    const objects = await fetchPodObjects(apiObjectSource(nodeClient), p);
    const { setups, warnings } = podVolumeSetups(p, objects);
    expect(warnings).toEqual([]);
    const files = setups.find((x) => x.name === vol!.name);
    const byPath = new Map(
      files?.kind === "files" ? files.files.map((f) => [f.path, f.content.toString()]) : [],
    );
    expect([...byPath.keys()].sort()).toEqual(["ca.crt", "namespace", "token"]);
    expect(byPath.get("ca.crt")).toBe(await readFile(s.pki.caCert, "utf8"));
    expect(byPath.get("namespace")).toBe("default");
    expect((claimsOf(byPath.get("token")!)["kubernetes.io"] as { pod: unknown }).pod).toEqual({
      name: "mounted",
      uid: p.metadata!.uid,
    });
    const mounts = containerMounts(p.spec!.containers[0]!, new Map([[vol!.name, "/r/vol"]]));
    expect(mounts[0]).toMatchObject({
      containerPath: "/var/run/secrets/kubernetes.io/serviceaccount",
      readonly: true,
    });
  });

  it("leaves the volume out when the pod or its ServiceAccount says automountServiceAccountToken: false", async () => {
    expect((await apply(pod("no-mount", "automountServiceAccountToken: false,"))).code).toBe(0);
    const a = (await client.get("pods", "no-mount", "default")) as V1Pod;
    expect(a.spec?.volumes ?? []).toEqual([]);
    expect(a.spec?.containers[0]?.volumeMounts).toBeUndefined();
    await ok("create", "serviceaccount", "quiet");
    await ok("patch", "serviceaccount", "quiet", "-p", '{"automountServiceAccountToken": false}');
    expect((await apply(pod("quiet-pod", "serviceAccountName: quiet,"))).code).toBe(0);
    expect(((await client.get("pods", "quiet-pod", "default")) as V1Pod).spec?.volumes ?? []).toEqual([]);
    // The pod's own true wins over its ServiceAccount's false.
    expect(
      (await apply(pod("loud-pod", "serviceAccountName: quiet, automountServiceAccountToken: true,"))).code,
    ).toBe(0);
    const loud = (await client.get("pods", "loud-pod", "default")) as V1Pod;
    expect(loud.spec?.volumes?.map((v) => v.name)).toEqual([expect.stringMatching(/^kube-api-access-/)]);
  });
});

describe("bad input to the new endpoints", () => {
  it("answers each with a Status naming the problem, and keeps serving", async () => {
    const admin = await identity(s, s.admin);
    const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      rawRequest(s.port, admin, "POST", path, { body: JSON.stringify(body), headers });
    const status = (r: RawResponse) => ({
      code: r.code,
      ...(JSON.parse(r.body) as { kind: string; message: string }),
    });
    const SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    const cases: [Promise<RawResponse>, number, string][] = [
      [
        post(SSAR, { kind: "SelfSubjectAccessReview", apiVersion: "authorization.k8s.io/v1", spec: {} }),
        422,
        'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified',
      ],
      [
        post(SSAR, { spec: { resourceAttributes: { verb: "get" }, nonResourceAttributes: { path: "/x" } } }),
        422,
        "spec.nonResourceAttributes: Invalid value",
      ],
      [post(SSAR, { spec: "nonsense" }), 422, "spec: Required value"],
      [post(SSAR, [1, 2]), 400, "must be a JSON or YAML object"],
      [
        post("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
          spec: { resourceAttributes: { verb: "get" } },
        }),
        422,
        'spec.user: Invalid value: "": at least one of user or group must be specified',
      ],
      [
        post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", { spec: {} }),
        400,
        "no namespace on request",
      ],
      [rawRequest(s.port, admin, "GET", SSAR), 405, "the server does not allow this method"],
      [
        post("/api/v1/namespaces/default/serviceaccounts/default/token", {
          spec: { expirationSeconds: "soon" },
        }),
        422,
        "spec.expirationSeconds: Invalid value",
      ],
      [
        post("/api/v1/namespaces/default/serviceaccounts/default/token", {
          spec: { boundObjectRef: { kind: "Deployment", name: "x" } },
        }),
        422,
        'spec.boundObjectRef.kind: Unsupported value: "Deployment"',
      ],
      [
        post("/api/v1/namespaces/default/serviceaccounts/default/token", {
          spec: { boundObjectRef: { kind: "Pod", name: "nope" } },
        }),
        404,
        'pods "nope" not found',
      ],
      [
        rawRequest(s.port, admin, "GET", "/api/v1/namespaces/default/serviceaccounts/default/token"),
        405,
        "does not allow this method",
      ],
      [
        post("/api/v1/namespaces/default/configmaps/x/token", {}),
        404,
        "configmaps have no token subresource",
      ],
      [
        rawRequest(s.port, admin, "GET", "/api/v1/pods", { headers: { "Impersonate-Group": "x" } }),
        500,
        "without impersonating a user",
      ],
      [
        post("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
          metadata: { name: "a/b" },
          rules: [{ verbs: [], nonResourceURLs: ["/x"], resources: ["pods"] }],
        }),
        422,
        "rules[0].verbs: Required value: verbs must contain at least one value",
      ],
    ];
    for (const [res, code, text] of cases) {
      const r = status(await res);
      expect(r.kind, text).toBe("Status");
      expect(r.code, text).toBe(code);
      expect(r.message).toContain(text);
    }
    const role = status(
      await post("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        metadata: { name: "a/b" },
        rules: [{ verbs: ["get"], nonResourceURLs: ["/x"], resources: ["pods"] }],
      }),
    );
    expect(role.message).toContain("metadata.name: Invalid value: \"a/b\": may not contain '/'");
    expect(role.message).toContain(
      'rules[0].nonResourceURLs: Invalid value: ["/x"]: rules cannot apply to both regular resources and non-resource URLs',
    );
    // A bearer token that is not even base64 is a 401, and the server answers on.
    const anon = { ...admin, cert: undefined, key: undefined } as unknown as typeof admin;
    const bad = await rawRequest(s.port, anon, "GET", "/api/v1/pods", {
      headers: { Authorization: "Bearer \u00ff.%%%.***" },
    });
    expect(bad.code).toBe(401);
    expect(bad.json?.message).toBe("Unauthorized");
    expect((await rawRequest(s.port, admin, "GET", "/readyz")).code).toBe(200);
  });
});

describe("the default ServiceAccount", () => {
  it("is created in a new namespace and made again when deleted", async () => {
    await ok("create", "namespace", "team");
    await until(
      "team/default ServiceAccount",
      async () => (await kubectl("get", "sa", "default", "-n", "team")).code === 0,
      20_000,
    );
    const first = JSON.parse(await ok("get", "sa", "default", "-n", "team", "-o", "json")) as {
      metadata: { uid: string };
    };
    await ok("delete", "sa", "default", "-n", "team");
    await until(
      "team/default ServiceAccount made again",
      async () => {
        const r = await kubectl("get", "sa", "default", "-n", "team", "-o", "json");
        return (
          r.code === 0 &&
          (JSON.parse(r.stdout) as { metadata: { uid: string } }).metadata.uid !== first.metadata.uid
        );
      },
      20_000,
    );
  });
});
