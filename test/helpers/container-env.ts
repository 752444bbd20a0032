/** A container's environment (CRI key/value pairs, in order) as a record, the last value of a key winning. */
export const envRecord = (envs: readonly { key: string; value: string }[]): Record<string, string> =>
  Object.fromEntries(envs.map((kv) => [kv.key, kv.value]));
