/** Benchmarks print a figure beside a baseline measured in the same run, as a ratio. */
export const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
export const ratio = (value: number, baseline: number) => `${(value / baseline).toFixed(2)}x`;

export function row(label: string, value: string, note = ""): void {
  console.log(`  ${label.padEnd(44)} ${value.padStart(16)}   ${note}`);
}
