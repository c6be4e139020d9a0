import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileStore } from "./files.ts";
import { startSimulator, type Simulator } from "./index.ts";

let n = 0;
const store = () => new FileStore(() => `file-${++n}`);

describe("FileStore", () => {
  it("writes a file line by line and reads it back as a stream, each line with where it sits", async () => {
    const files = store();
    try {
      // Over 1 MB (written in several pieces) and over 64 KB (read in several chunks), with two-byte characters.
      const want = Array.from({ length: 6_000 }, (_, i) => JSON.stringify({ i, text: "é".repeat(i % 300) }));
      const f = files.write("out.jsonl", "batch_output", (write) => want.forEach(write));
      expect(f.bytes).toBeGreaterThan(1 << 20);
      expect(readFileSync(f.path, "utf8")).toBe(want.join("\n") + "\n");
      expect(files.get(f.id)).toBe(f);

      const got: string[] = [];
      for await (const line of files.lines(f)) {
        expect(line.n).toBe(got.length + 1);
        expect(files.readLineAt(f, line.at)).toBe(line.text);
        got.push(line.text);
      }
      expect(got).toEqual(want);
    } finally {
      files.close();
    }
  });

  it("reads a last line with no newline, and blank lines, keeping their numbers", async () => {
    const files = store();
    try {
      const f = files.write("in.jsonl", "batch", (write) => ["a", "", "b"].forEach(write));
      const lines = [];
      for await (const l of files.lines(f)) lines.push([l.n, l.text]);
      expect(lines).toEqual([[1, "a"], [2, ""], [3, "b"]]);
    } finally {
      files.close();
    }
  });

  it("keeps a spool's lines on disk, read back by where they sit", () => {
    const files = store();
    try {
      const spool = files.spool();
      const at = ["first", "é".repeat(1000), "{}"].map((t) => [t, spool.append(t)] as const);
      for (const [text, where] of at.reverse()) expect(spool.read(where)).toBe(text);
    } finally {
      files.close();
    }
  });

  it("removes a deleted file at once, and every file when closed", () => {
    const files = store();
    const a = files.write("a", "batch", (write) => write("a"));
    const b = files.write("b", "batch", (write) => write("b"));
    expect(files.delete(a.id)).toBe(true);
    expect(files.delete(a.id)).toBe(false);
    expect(existsSync(a.path)).toBe(false);
    expect(existsSync(b.path)).toBe(true);
    files.close();
    expect(existsSync(b.path)).toBe(false);
  });
});

describe("the simulator's Files API", () => {
  let sim: Simulator;
  let openai: OpenAI;
  beforeAll(async () => {
    sim = await startSimulator();
    openai = new OpenAI({ apiKey: "sk-test", baseURL: sim.openaiBaseURL, maxRetries: 0 });
  });
  afterAll(async () => {
    await sim?.close();
  });

  it("stores an upload and gives it back byte for byte", async () => {
    const text = Array.from({ length: 3_000 }, (_, i) => `{"line":${i},"x":"${"ü".repeat(i % 40)}"}`).join("\n") + "\n";
    const file = await openai.files.create({ file: await toFile(Buffer.from(text), "up.jsonl"), purpose: "batch" });
    expect(file).toMatchObject({ bytes: Buffer.byteLength(text), filename: "up.jsonl", purpose: "batch" });
    expect(await (await openai.files.content(file.id)).text()).toBe(text);
    expect((await openai.files.retrieve(file.id)).bytes).toBe(Buffer.byteLength(text));
    await openai.files.delete(file.id);
    await expect(openai.files.content(file.id)).rejects.toMatchObject({ status: 404 });
  });

  it("runs a batch whose input file was deleted while it ran", async () => {
    const lines = ["a", "b", "c"].map((id) => JSON.stringify({ custom_id: id, method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini", messages: [{ role: "user", content: `ticket ${id}` }] } }));
    const file = await openai.files.create({ file: await toFile(Buffer.from(lines.join("\n") + "\n"), "in.jsonl"), purpose: "batch" });
    let batch = await openai.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    await openai.files.delete(file.id);
    await expect(openai.files.retrieve(file.id)).rejects.toMatchObject({ status: 404 });
    for (let i = 0; i < 50 && batch.status !== "completed"; i++) batch = await openai.batches.retrieve(batch.id);
    expect(batch.request_counts).toMatchObject({ total: 3, completed: 3 });
    const out = (await (await openai.files.content(batch.output_file_id!)).text()).trim().split("\n").map((l) => JSON.parse(l) as { custom_id: string });
    expect(out.map((l) => l.custom_id).sort()).toEqual(["a", "b", "c"]);
  });

  it("refuses an upload without a purpose or without a file, as OpenAI does", async () => {
    const post = (form: FormData) => fetch(`${sim.openaiBaseURL}/files`, { method: "POST", headers: { authorization: "Bearer sk-test" }, body: form });
    const noPurpose = new FormData();
    noPurpose.append("file", new File(["{}\n"], "a.jsonl"));
    const r1 = await post(noPurpose);
    expect(r1.status).toBe(400);
    expect(((await r1.json()) as { error: unknown }).error).toMatchObject({ param: "purpose", code: "missing_required_parameter" });
    const noFile = new FormData();
    noFile.append("purpose", "batch");
    const r2 = await post(noFile);
    expect(r2.status).toBe(400);
    expect(((await r2.json()) as { error: unknown }).error).toMatchObject({ param: "file", code: "missing_required_parameter" });
  });
});

it("keeps a simulator's files in a folder of its own, removed when it stops", async () => {
  const before = process.env.TMPDIR;
  const dir = mkdtempSync(join(tmpdir(), "sluice-sim-files-test-"));
  process.env.TMPDIR = dir;
  try {
    const sim = await startSimulator();
    const openai = new OpenAI({ apiKey: "sk-test", baseURL: sim.openaiBaseURL, maxRetries: 0 });
    await openai.files.create({ file: await toFile(Buffer.from("{}\n"), "a.jsonl"), purpose: "batch" });
    const [own] = readdirSync(dir);
    expect(readdirSync(join(dir, own!))).toHaveLength(1);
    await sim.close();
    expect(readdirSync(dir)).toEqual([]);
  } finally {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
    rmSync(dir, { recursive: true, force: true });
  }
});

it("removes a simulator's folder when its process exits without stopping it", () => {
  const dir = mkdtempSync(join(tmpdir(), "sluice-sim-exit-test-"));
  try {
    const code = `
      const { readdirSync } = await import("node:fs");
      const { startSimulator } = await import("./src/sim/index.ts");
      const sim = await startSimulator();
      const form = new FormData();
      form.append("purpose", "batch");
      form.append("file", new File(["{}\\n"], "a.jsonl"));
      const res = await fetch(sim.openaiBaseURL + "/files", { method: "POST", headers: { authorization: "Bearer sk-test" }, body: form });
      const own = readdirSync(process.env.TMPDIR).filter((n) => n.startsWith("sluice-sim-files-"));
      console.log(JSON.stringify({ status: res.status, folders: own.length, files: readdirSync(process.env.TMPDIR + "/" + own[0]).length }));
      process.exit(0);`;
    const out = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], { cwd: join(import.meta.dirname, "../.."), env: { ...process.env, TMPDIR: dir }, encoding: "utf8", timeout: 60_000 });
    expect(out.stderr).toBe("");
    expect(JSON.parse(out.stdout.trim())).toEqual({ status: 200, folders: 1, files: 1 });
    // (tsx keeps its cache there too.)
    expect(readdirSync(dir).filter((n) => n.startsWith("sluice-sim-files-"))).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
