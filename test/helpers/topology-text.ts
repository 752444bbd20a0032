/**
 * The first lines of a topology file whose only problem so far is an even master count: `count: 2`
 * stands at line 7, column 5. Tests add lines after it.
 */
export const EVEN_MASTERS_LINES: readonly string[] = [
  "apiVersion: lab/v1alpha1",
  "kind: Lab",
  "metadata:",
  "  name: demo",
  "spec:",
  "  masters:",
  "    count: 2",
];
