/**
 * Go's base64.StdEncoding.DecodeString error position, which is what Kubernetes reports for Secret
 * and binaryData values that are not base64 (`illegal base64 data at input byte N`); undefined
 * when the text decodes. Newlines are skipped, as Go skips them.
 */
const ALPHABET = new Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");

export function base64ErrorAt(src: string): number | undefined {
  const nl = (c: string | undefined): boolean => c === "\n" || c === "\r";
  let si = 0;
  while (si < src.length) {
    for (let j = 0; j < 4; j++) {
      if (si === src.length) {
        if (j === 0) return undefined;
        return si - j;
      }
      const c = src[si++]!;
      if (ALPHABET.has(c)) continue;
      if (nl(c)) {
        j--;
        continue;
      }
      if (c !== "=") return si - 1;
      // Padding: only after two or three data characters, and the end of the input must follow.
      if (j === 0 || j === 1) return si - 1;
      if (j === 2) {
        while (si < src.length && nl(src[si])) si++;
        if (si === src.length) return src.length;
        if (src[si] !== "=") return si - 1;
        si++;
      }
      while (si < src.length && nl(src[si])) si++;
      return si < src.length ? si : undefined;
    }
  }
  return undefined;
}

/** Decoded length of text base64ErrorAt accepted. */
export function base64DecodedLength(src: string): number {
  return Buffer.from(src, "base64").length;
}
