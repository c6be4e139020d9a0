// Preloaded by the footprint benchmark (`node --import ./bench/peak-rss.mjs ...`):
// at exit, prints this process's own peak RSS (not its children's, such as the
// short-lived process that creates a new embedded store) as one JSON line on stderr.
process.on("exit", () => {
  process.stderr.write(`\n${JSON.stringify({ peakRssMb: process.resourceUsage().maxRSS / 1024 })}\n`);
});
