import { readFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * Typed stage outputs, checked by the compiler: `test/types/mistakes.ts` is
 * compiled with its `@ts-expect-error` directives taken out, and each mistake
 * must give, on the line after its directive, the message the directive names
 * (and nothing else may fail in the file).
 */
const root = join(import.meta.dirname, "..");
const fixture = join(root, "test", "types", "mistakes.ts");
const DIRECTIVE = /^\s*\/\/ @ts-expect-error ([^:]+): (.+)$/;

function compileWithoutDirectives(): { expected: { line: number; mistake: string; message: string }[]; found: Map<number, string[]> } {
  const lines = readFileSync(fixture, "utf8").split("\n");
  const expected = lines.flatMap((text, i) => {
    const m = DIRECTIVE.exec(text);
    return m ? [{ line: i + 1, mistake: m[1]!, message: m[2]! }] : [];
  });
  // Keep the line numbers: the directive becomes a plain comment.
  const source = lines.map((l) => l.replace("// @ts-expect-error", "// expected:")).join("\n");
  const config = ts.getParsedCommandLineOfConfigFile(join(root, "tsconfig.json"), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => { throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n")); } });
  if (!config) throw new Error("tsconfig.json did not parse");
  const host = ts.createCompilerHost(config.options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, version, onError, create) =>
    name === fixture ? ts.createSourceFile(name, source, version) : getSourceFile(name, version, onError, create);
  const program = ts.createProgram({ rootNames: [fixture], options: config.options, host });
  const found = new Map<number, string[]>();
  for (const d of ts.getPreEmitDiagnostics(program)) {
    if (d.file?.fileName !== fixture || d.start === undefined) throw new Error(`unexpected diagnostic: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
    const line = d.file.getLineAndCharacterOfPosition(d.start).line + 1;
    found.set(line, [...(found.get(line) ?? []), ts.flattenDiagnosticMessageText(d.messageText, "\n")]);
  }
  return { expected, found };
}

describe("typed stage outputs", () => {
  it("reject a wrong stage id, a wrong field, a field of the wrong type and reading a later stage, each with a message that says so", () => {
    const { expected, found } = compileWithoutDirectives();
    expect(expected.map((e) => e.mistake)).toEqual(expect.arrayContaining(["a wrong stage id", "a wrong field", "a field of the wrong type", "reading a later stage"]));
    for (const e of expected) {
      const messages = found.get(e.line + 1) ?? [];
      expect(messages.some((m) => m.includes(e.message)), `${e.mistake} (line ${e.line + 1}): got ${JSON.stringify(messages)}`).toBe(true);
    }
    // Every error the file gives is one of the expected mistakes.
    expect([...found.keys()].sort((a, b) => a - b)).toEqual(expected.map((e) => e.line + 1));
  }, 120_000);
});

describe("prompt slots at run time", () => {
  it("refuse a pipeline whose prompt names a stage the stage does not read, in one line", async () => {
    const { definePipeline, defineStage } = await import("../src/core/define.ts");
    const label = { type: "object", properties: { category: { type: "string" } } };
    const classify = defineStage({ id: "classify", kind: "classify", model: "gpt-4o-mini", prompt: { user: "{{item.text}}" }, output: { name: "Label", schema: label } });
    const extract = (user: string, reads?: string[]) =>
      defineStage({ id: "extract", kind: "extract", model: "gpt-4o", ...(reads ? { reads } : {}), prompt: { user }, output: { name: "Fields", schema: label } });
    const make = (user: string, reads?: string[]) => () => definePipeline({ id: "slots", source: { key: "id" }, stages: [classify, extract(user, reads)] });
    expect(make("{{outputs.classify.category}} {{ item.text }}")).not.toThrow();
    expect(make("{{outputs.classify.category}}", ["classify"])).not.toThrow();
    expect(make("{{outputs.clasify.category}}")).toThrow('pipeline "slots", stage 2 ("extract"): prompt slot {{outputs.clasify.category}} names "clasify", which this stage does not read (it reads classify)');
    expect(make("{{outputs.classify.category}}", [])).toThrow(/names "classify", which this stage does not read \(it reads no stage\)$/);
  });
});
