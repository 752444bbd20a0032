/**
 * What `lab down` runs on a bare-metal host: it removes what lab installed and nothing else.
 * Removed: the lab-* systemd units, /etc/lab (config, certificates), /var/lib/lab (etcd data, agent
 * state), /opt/lab (Node runtime, lab-server, lab-agent), the VIP if still bound, and the mask lab
 * put on the distribution's etcd.service. Left: Debian packages lab installed (listed in the lab
 * state and printed), and the SSH access the user set up.
 */
import { HOST_PATHS, LAB_UNITS } from "../../templates/paths.ts";

export function renderTeardownScript(opts: { vip?: string; prefix?: number }): string {
  const units = LAB_UNITS.join(" ");
  const vip = opts.vip
    ? `for dev in $(ip -o -4 addr show | awk '$4 == "${opts.vip}/${opts.prefix ?? 32}" {print $2}'); do ip addr del ${opts.vip}/${opts.prefix ?? 32} dev "$dev" || true; done`
    : ":";
  return `set -u
for u in ${units}; do
  systemctl disable --now "$u" >/dev/null 2>&1 || true
  rm -f ${HOST_PATHS.unitDir}/"$u"
done
if [ -f ${HOST_PATHS.etc}/masked-units ]; then
  for u in $(sort -u ${HOST_PATHS.etc}/masked-units); do systemctl unmask "$u" >/dev/null 2>&1 || true; done
fi
systemctl daemon-reload >/dev/null 2>&1 || true
for u in ${units}; do systemctl reset-failed "$u" >/dev/null 2>&1 || true; done
${vip}
rm -rf ${HOST_PATHS.etc} ${HOST_PATHS.varLib} ${HOST_PATHS.opt}
rm -f /var/tmp/.lab-upload-*
echo removed
`;
}
