/** A systemd service unit as data, rendered in one place so every unit lab writes looks the same. */
export interface ServiceUnit {
  description: string;
  after?: string[];
  wants?: string[];
  /** argv; each argument is quoted for systemd when it needs to be. */
  exec: string[];
  user?: string;
  environment?: Record<string, string>;
  restart?: "always" | "on-failure";
  restartSec?: number;
  type?: "simple" | "notify";
  limitNoFile?: number;
  /** Extra [Service] lines (e.g. `KillMode=process`). */
  extra?: string[];
}

/** Quotes one argument the way systemd's ExecStart= parser reads it back. */
export function systemdQuote(arg: string): string {
  if (arg !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg.replace(/%/g, "%%");
  return `"${arg.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/%/g, "%%")}"`;
}

export function renderServiceUnit(u: ServiceUnit): string {
  const lines = ["# Written by lab; `lab down` removes it.", "[Unit]", `Description=${u.description}`];
  if (u.after?.length) lines.push(`After=${u.after.join(" ")}`);
  if (u.wants?.length) lines.push(`Wants=${u.wants.join(" ")}`);
  lines.push("", "[Service]", `Type=${u.type ?? "simple"}`);
  if (u.user) lines.push(`User=${u.user}`);
  for (const [k, v] of Object.entries(u.environment ?? {}))
    lines.push(`Environment=${systemdQuote(`${k}=${v}`)}`);
  const [cmd, ...args] = u.exec;
  lines.push(`ExecStart=${[cmd!, ...args.map(systemdQuote)].join(" \\\n  ")}`);
  lines.push(`Restart=${u.restart ?? "always"}`, `RestartSec=${u.restartSec ?? 2}`);
  if (u.limitNoFile) lines.push(`LimitNOFILE=${u.limitNoFile}`);
  lines.push(...(u.extra ?? []));
  lines.push("", "[Install]", "WantedBy=multi-user.target", "");
  return lines.join("\n");
}
