/**
 * Writes the demo data set: examples/data/tickets.csv (support tickets with
 * realistic mess) and examples/data/tickets.labels.csv (what each ticket is
 * really about, and which mess it got). Seeded, so the output is byte-for-byte
 * the same on every run.
 *
 *   npm run gen:tickets [-- --count 5080 --seed 20240601 --out examples/data]
 */
import { mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

export type Category = "billing" | "refund" | "bug" | "how_to" | "account" | "other";
export type Intended = Category | "spam" | "autoreply" | "empty";
export type Kind =
  | "normal" | "duplicate" | "conflicting_duplicate" | "long_body" | "non_english"
  | "spam" | "autoreply" | "empty_body" | "oversized";

export interface Ticket { id: string; subject: string; body: string; customer_email: string; created_at: string }
export interface Label { id: string; intended_category: Intended; kind: Kind }
export interface GenerateOptions { count?: number; seed?: number }

export const DEFAULT_COUNT = 5080;
export const DEFAULT_SEED = 20240601;
export const COLUMNS = ["id", "subject", "body", "customer_email", "created_at"] as const;

/** mulberry32: tiny, fast, and good enough to make data look random. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
const int = (rng: Rng, lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));

const PRODUCTS = ["Sluice Cloud", "Sluice Desktop", "Sluice Mobile", "Sluice API"];
const PLANS = ["Starter", "Team", "Business", "Enterprise"];
const PRICES = ["9.99", "19.99", "29.00", "49.99", "79.00", "99.00", "129.99", "199.00", "249.00", "12.50", "1,299.00", "2,400.00"];
const OSES = ["Windows 11", "macOS 14.4", "Ubuntu 22.04", "iOS 17.3", "Android 14", "Windows 10"];
const FIRST = ["Anna", "Ben", "Chloé", "David", "Emma", "Farid", "Grace", "Hiro", "Isabel", "Jonas", "Kemi", "Liam", "Maria", "Noah", "Olivia", "Priya", "Quentin", "Rosa", "Sam", "Tomás", "Uma", "Victor", "Wei", "Yara", "Zoe"];
const LAST = ["Smith", "Müller", "Garcia", "Tanaka", "Okafor", "Dubois", "Rossi", "Kowalski", "Nguyen", "Silva", "Johansson", "Patel", "O'Brien", "Cohen", "Kim"];
const DOMAINS = ["gmail.com", "outlook.com", "acme.io", "northwind.example", "globex.example", "initech.example", "yahoo.co.jp", "web.de", "orange.fr"];
const COMPANIES = ["Acme Corp", "Northwind Traders", "Globex, Inc.", "Initech GmbH", "Umbrella Logistics", "Hooli", "Vandelay Industries"];

type Ctx = Record<string, string> & Record<"email" | "product" | "version" | "os" | "errcode", string>;

/** Per-ticket values the templates draw from. */
function context(rng: Rng): Ctx {
  const first = pick(rng, FIRST);
  const last = pick(rng, LAST);
  const email = `${first}.${last}`.toLowerCase().normalize("NFD").replace(/[^a-z.]/g, "") + `@${pick(rng, DOMAINS)}`;
  const price = pick(rng, PRICES);
  let price2 = pick(rng, PRICES);
  if (price2 === price) price2 = PRICES[(PRICES.indexOf(price) + 1) % PRICES.length]!;
  return {
    first, last, email, product: pick(rng, PRODUCTS), plan: pick(rng, PLANS), os: pick(rng, OSES),
    company: pick(rng, COMPANIES), order: `ORD-${int(rng, 10000, 99999)}`, invoice: `INV-2024-${int(rng, 1000, 9999)}`,
    amount: `$${price}`, amount2: `$${price2}`, card4: String(int(rng, 1000, 9999)), seats: String(int(rng, 2, 40)),
    version: `4.${int(rng, 2, 14)}.${int(rng, 0, 9)}`, errcode: pick(rng, ["E1042", "ERR_SYNC_TIMEOUT", "E2210", "EXPORT_FAILED", "E0007"]),
    reqid: `req_${Math.floor(rng() * 0xffffffff).toString(16).padStart(8, "0")}`, date: `2024-0${int(rng, 1, 6)}-${String(int(rng, 1, 28)).padStart(2, "0")}`,
    username: `${first.toLowerCase().normalize("NFD").replace(/[^a-z]/g, "")}${int(rng, 1, 99)}`,
  };
}

const fill = (template: string, ctx: Record<string, string>) => template.replace(/\{(\w+)\}/g, (_, k: string) => ctx[k] ?? `{${k}}`);

/**
 * Per category: [subjects (alternatives split by " | "), body core]. Cues are realistic, not
 * perfect: some cores lean on another category's words, or on none, on purpose. A leading
 * "~" marks a core that reads like another category; those come up less often.
 */
const TEMPLATES: Record<Category, [string, string][]> = {
  billing: [
    ["Charged the wrong amount for {product} | Invoice {invoice} looks wrong", "I was charged {amount} on {date} for {product} ({order}), but our {plan} plan should be {amount2} per month. Can you check the invoice and correct the charge?"],
    ["VAT missing on receipt | Invoice {invoice} needs our VAT number", "Our finance team needs a copy of invoice {invoice} with our VAT number on it. The receipt we got for {order} does not show it."],
    ["Payment declined | Card declined on renewal", "My card ending in {card4} was declined when the {plan} subscription for {product} renewed. I updated the card but the payment still shows as failed."],
    ["Double charge on {date} | Billed twice for {order}", "We were billed twice for {order}: two charges of {amount} appeared on our statement on {date}. Please look into the billing for this."],
    ["Pricing for extra seats | Per-seat price question", "The pricing page says {amount} per seat but invoice {invoice} shows {amount2} per seat for {seats} seats. Which one is correct?"],
    ["Switch to annual billing | Yearly invoice?", "Could you switch our subscription from monthly to annual billing? We would like one invoice per year for {product}."],
    ["Wrong company name on receipt | Receipt for {order}", "The receipt for {order} lists the wrong company name. Please reissue it to \"{company}\", with the address below."],
    ["Paying by bank transfer | Change payment method", "I'd like to pay by bank transfer instead of card from next month. We currently pay {amount} a month for {product}, invoice {invoice}."],
    ["Subscription price went up? | Why is my bill higher?", "Why did my bill go from {amount} to {amount2}? Nobody told us the subscription pricing was changing."],
    ["Too many seats on our invoice | Seat count wrong", "Our account was charged {amount} for {seats} seats, but we only have a few users in {product}. Can you adjust the invoice?"],
    ["Still paying after cancelling | Charges after we cancelled", "We cancelled in March but kept getting charged every month. Please return the fees for the last two months."],
    ["~Receipts for the last quarter | Documents for our accountant", "Could you tell me where to find the receipts for our last three months? Our accountant is asking."],
  ],
  refund: [
    ["Refund request for {order} | Bought {product} by mistake", "I bought {product} by mistake ({order}, {amount}) and never used it. I'd like a refund, please."],
    ["Cancel my order {order} | Wrong edition ordered", "Please cancel my order {order} and refund the {amount}. I ordered the wrong edition of {product}."],
    ["Money back for unused months | Unwanted renewal", "The annual renewal of {amount} went through on {date} even though we stopped using {product} months ago. Can we get our money back?"],
    ["Refund not received yet | Where is my refund?", "You promised a refund for {order} two weeks ago but I still don't see the {amount} credit back on my statement."],
    ["Return of {product} license | Returning our licence", "I want to return my {product} license. It does not do what we were told in the sales call. Order {order}, paid {amount}."],
    ["Chargeback warning | Last try before my bank", "If I don't get a refund for {order} by Friday I will file a chargeback with my bank."],
    ["Refund the downgrade difference | Overpaid after downgrade", "We downgraded from {plan} on {date} but were charged the full {amount} anyway. Please reimburse the difference."],
    ["Refund one of two payments | Duplicate payment for {order}", "I was charged twice for {order}. Please refund one of the two payments of {amount}."],
    ["~Refund for accidental renewal | Reverse the renewal please", "The renewal charge of {amount} on {date} was a mistake, we meant to end the subscription before it renewed. Can you reverse it?"],
    ["~Licence never arrived | Paid but got nothing", "We paid {amount} for {product} but the licence never arrived. Can you sort this out for order {order}?"],
  ],
  bug: [
    ["{product} crashes on startup | Crash when opening projects", "Since updating {product} to {version}, the app crashes every time I open a project. I'm on {os}. Reinstalling did not help."],
    ["Error {errcode} when exporting | Export broken", "When I export a report I get error {errcode}: \"Unexpected token in response\". This started yesterday, on {os}."],
    ["API returns 500 on /v2/jobs | Intermittent 500s from the API", "Calls to POST /v2/jobs fail with a 500 status about one time in ten. Request id {reqid}.\n\nStack trace:\nTypeError: Cannot read properties of undefined (reading 'id')\n    at JobQueue.enqueue (jobs/queue.js:88:21)\n    at async handler (api/jobs.js:41:5)"],
    ["Sync not working since {version} | Files stuck pending", "File sync is not working on {os}: files stay \"pending\" forever. {product} version {version}."],
    ["Dashboard broken after update | Blank charts", "The dashboard is broken after today's update: charts are blank and the console shows an exception (TypeError: x.map is not a function)."],
    ["App freezes when uploading files | Upload hangs", "{product} freezes for about 30 seconds whenever I upload more than 20 files at once. It recovers, but it is painful."],
    ["Totals wrong in CSV export | Export totals off by cents", "The totals in the CSV export don't match what the web app shows, off by a few cents. Looks like a rounding bug in {product}."],
    ["Notifications bug | Something is off with notifications", "Notifications arrive two or three times each on {os}, and sometimes a day late. Version {version}."],
    ["~Invoice download throws an error | Can't download {invoice}", "The invoice page throws an error when I try to download a PDF of {invoice}."],
    ["Reports fail to load | Scheduled reports failing", "Scheduled reports keep failing overnight with {errcode}. They worked fine until {date}."],
    ["~Blank login page | White screen in {product}", "The login page shows a blank white screen on {os} since {version}."],
    ["Dashboards broken: numbers from last week | Stale dashboards", "Since yesterday some of our dashboards show numbers from last week, as if the page never refreshes."],
  ],
  how_to: [
    ["How do I export my data? | Export everything to CSV", "How do I export all my projects from {product} to CSV? I couldn't find it in the documentation."],
    ["Is it possible to schedule reports? | Weekly report by email", "Is it possible to schedule a weekly report to be emailed to my team?"],
    ["Where can I find the API keys? | API keys location", "Where can I find the API keys for {product}? The guide mentions a settings page I can't see."],
    ["Setting up SSO | SSO with Okta", "We want to set up SSO with Okta for {seats} people. Is there a tutorial for this?"],
    ["Using {product} behind a proxy | Proxy settings", "How can I configure {product} to go through our corporate proxy on {os}?"],
    ["Looking for a guide on migrating | Moving to Sluice Cloud", "What's the best way to move our workspace from {product} to Sluice Cloud? A step-by-step guide would help."],
    ["Question about webhooks | Webhooks for new jobs", "Can webhooks be sent for every new job, or only for failed ones? Where is that set up?"],
    ["~Changing my email | New email address", "How do I change the email address on my account? I'm moving to {email}."],
    ["How to invite teammates | How do I give a contractor access?", "We'd like to invite a contractor to one project only. What is the right way to do that?"],
    ["~Receipt for expenses | Where do I find receipts?", "Where do I find the receipt for my last payment? I need it for an expense claim."],
    ["Is it possible to share outside the company? | Guest access?", "Can a project be shared with people outside our company without giving them a full seat?"],
  ],
  account: [
    ["Locked out of my account | Too many attempts", "I've been locked out after too many login attempts. Can you unlock it? My username is {username}."],
    ["Password reset email never arrives | No reset email", "The password reset email never arrives. I checked spam. My email address is {email}."],
    ["Can't log in after enabling 2FA | Lost my 2FA phone", "I enabled two-factor authentication and lost my phone. Now I can't sign in to {product}."],
    ["Change account owner | Transfer account ownership", "Our admin left the company; please transfer ownership of the workspace to me ({email})."],
    ["Please delete my account | GDPR deletion request", "Please delete my account and all data attached to it, as required under GDPR."],
    ["Sign in loop on {product} | Stuck on the sign in page", "Every time I log in I get sent back to the sign in page. Cleared cookies already."],
    ["Merge two accounts | Two logins, one person", "I have two accounts, {username} and {email}, and would like to merge them into one account."],
    ["Username not found | Can't sign in since yesterday", "I can't sign in since the password change yesterday. It says the username does not exist."],
    ["~2FA for the whole team | Enforcing 2FA", "How do I turn on 2FA for everyone in the workspace at once?"],
    ["Close a former colleague's account | Revoke access today", "A former colleague still has access to our workspace. Please remove them today, it is urgent."],
  ],
  other: [
    ["Feature request: dark mode | Dark mode please", "It would be great to have a dark mode in {product}. Our team works late and the white background is tiring."],
    ["Partnership inquiry | Reseller partnership", "We're a consulting firm working with {company} and would like to discuss a reseller partnership."],
    ["Feedback on the new design | Kudos to your team", "Just wanted to say the new design of {product} is lovely. Well done to everyone involved!"],
    ["Do you have a status page? | Planned maintenance notices", "Is there a public status page we can subscribe to? We'd like to see planned maintenance ahead of time."],
    ["Press inquiry | Interview request", "I'm writing an article on data tooling for a trade magazine. Would someone be available for a short interview?"],
    ["Conference sponsorship | Meetup sponsorship", "Would you be interested in sponsoring our meetup in the autumn? About 300 people attend."],
    ["Suggestion for the roadmap | Keyboard shortcuts", "Please consider adding keyboard shortcuts for the most common actions. It would save us a lot of clicks."],
    ["Data centre location | Where is our data?", "Where are your servers located? Our legal team needs to know which region our data lives in."],
    ["Non-profit discount? | Pricing for schools", "Do you offer discounts for non-profits or schools? We'd love to use {product} in our classes."],
    ["~Docs in dark theme | Small suggestion", "Your documentation site is great, but a dark theme there would be nice too."],
    ["Security questionnaire | SOC 2 report", "Our procurement team needs your security questionnaire and SOC 2 report before we renew."],
  ],
};

function template(rng: Rng, category: Category): [string[], string] {
  let [subjects, core] = pick(rng, TEMPLATES[category]);
  if (subjects.startsWith("~") && rng() < 0.65) [subjects, core] = pick(rng, TEMPLATES[category]);
  return [subjects.replace(/^~/, "").split(" | "), core];
}

const subjectOf = (rng: Rng, category: Category) => pick(rng, template(rng, category)[0]);

/** Non-English tickets: [language, category, subject, body]. Some carry loanwords a keyword reader catches, most do not. */
const FOREIGN: [string, Category, string, string][] = [
  ["fr", "billing", "Facture incorrecte pour {order}", "Bonjour, j'ai été facturé {amount} pour {product} alors que mon abonnement est à {amount2}. Pouvez-vous corriger la facture ? Merci."],
  ["fr", "refund", "Demande de remboursement", "Bonjour, je souhaite un remboursement pour la commande {order} ({amount}). Nous n'utilisons plus {product}."],
  ["fr", "bug", "Bug à l'ouverture de {product}", "Depuis la mise à jour {version}, {product} affiche une erreur et se ferme. Il y a clairement un bug."],
  ["fr", "account", "Impossible de me connecter", "Je n'arrive plus à me connecter, le mot de passe est refusé. Mon login : {username}."],
  ["es", "bug", "Error al sincronizar", "Hola, la aplicación muestra un error al sincronizar archivos en {os}. Versión {version}."],
  ["es", "billing", "Cobro duplicado", "Hola, me han cobrado dos veces {amount} por el pedido {order}. ¿Pueden revisar la factura?"],
  ["es", "account", "No puedo iniciar sesión", "No puedo entrar, olvidé el password y el correo de recuperación no llega."],
  ["es", "how_to", "¿Cómo configurar SSO?", "¿Cómo puedo configurar SSO con Azure AD en {product}? ¿Hay alguna guía?"],
  ["de", "refund", "Rückerstattung", "Guten Tag, bitte erstatten Sie den Betrag von {amount} für Bestellung {order} zurück. Vielen Dank."],
  ["de", "bug", "Fehler beim Export", "Beim Export nach PDF erscheint \"Internal Server Error 500\" und {product} reagiert nicht mehr."],
  ["de", "account", "Login funktioniert nicht", "Mein Login funktioniert seit gestern nicht mehr, das Passwort wird abgelehnt."],
  ["pt", "bug", "Erro no aplicativo", "Olá, o {product} fecha sozinho ao abrir relatórios. Parece um bug da versão {version}."],
  ["pt", "account", "Não consigo fazer login", "Não consigo fazer login desde ontem. Já tentei redefinir a senha."],
  ["pt", "billing", "Cobrança indevida", "Fui cobrado {amount} no pedido {order}, mas cancelei a assinatura em {date}."],
  ["ja", "bug", "アプリがクラッシュします", "{product} {version} を起動するとエラーが表示されて終了します。HTTP 500 と表示されます。"],
  ["ja", "account", "ログインできません", "パスワードをリセットしてもログインできません。ユーザー名: {username}"],
  ["ja", "refund", "返金のお願い", "注文 {order}（{amount}）の返金をお願いします。"],
];

const SPAM = [
  ["WIN A FREE iPhone 15 Pro!!!", "Congratulations!!! You have been selected to WIN A FREE iPhone 15 Pro. Click http://prizes-4u.example/claim?id={reqid} within 24 hours to claim."],
  ["Crypto opportunity - 300% returns", "Dear friend, our crypto trading bot doubles your investment every week. Join now: https://moonbag.example/join"],
  ["Boost your SEO today", "Hi, I noticed your site could rank higher. We offer guaranteed first-page results for just $99/month. Click here to book a call: https://rank-fast.example"],
  ["URGENT: claim your crypto airdrop", "Your wallet is eligible for 5,000 tokens. Connect your wallet at https://airdrop.example before it expires!!!"],
];

const AUTOREPLY = [
  ["Automatic reply: {subject}", "Thank you for your message. I am out of the office until {date} with limited access to email. For urgent matters please contact {email}."],
  ["Out of office: Re: your ticket", "I'm currently out of office and will reply when I'm back on {date}."],
  ["Automatic reply: Re: {subject}", "This is an automatic reply. Your message has been received and will be handled in the order it arrived."],
];

const GREETINGS = ["Hi,\n\n", "Hello team,\n\n", "Hi Sluice support,\n\n", "Good morning,\n\n", "", "Hey there,\n\n"];
const SIGNOFFS = ["\n\nThanks,\n{first}", "\n\nBest regards,\n{first} {last}\n{company}", "\n\nCheers, {first}", "\n\nSent from my phone", "", "\n\nKind regards,\n{first} {last}\nPhone: +44 20 7946 0{card4}"];
const ORDER_EXTRA = "\n\nOrder: {order}\nProduct: {product}\nPlan: {plan}";
const EXTRAS = [
  "\n\n-----Original Message-----\nFrom: Sluice Support <support@sluice.example>\nSent: {date}\n\n> Hi {first}, we have passed this on to the team and will get back to you, \"as soon as we can\".",
  "\n\n(Sorry if this is the second time I write, I did not get a confirmation.)",
];

function normalTicket(rng: Rng, ctx: Ctx, category: Category): { subject: string; body: string } {
  const [subjects, core] = template(rng, category);
  let subject = fill(pick(rng, subjects), ctx);
  const r = rng();
  if (r < 0.08) subject = `Re: ${subject}`;
  else if (r < 0.12) subject = `URGENT: ${subject}`;
  else if (r < 0.15) subject = subject.toLowerCase();
  let body = pick(rng, GREETINGS) + fill(core, ctx);
  const extras = category === "billing" || category === "refund" || category === "bug" ? [ORDER_EXTRA, ...EXTRAS] : EXTRAS;
  if (rng() < 0.25) body += fill(pick(rng, extras), ctx);
  return { subject, body: body + fill(pick(rng, SIGNOFFS), ctx) };
}

/** A pasted log (bug) or statement (billing) of roughly `bytes` bytes. */
function pastedBody(rng: Rng, ctx: Ctx, bytes: number, kind: "log" | "statement"): string {
  const lines: string[] = [];
  let size = 0;
  let ms = Date.UTC(2024, 4, int(rng, 1, 28), 2, 0, 0);
  while (size < bytes) {
    ms += int(rng, 5, 4000);
    const ts = new Date(ms).toISOString();
    let line: string;
    if (kind === "statement") {
      line = `${ts.slice(0, 10)}, CHARGE, ${pick(rng, PRODUCTS)} ${pick(rng, PLANS)}, ${pick(rng, ["$", "EUR "])}${pick(rng, PRICES)}, ORD-${int(rng, 10000, 99999)}`;
    } else {
      const r = rng();
      const worker = `worker-${int(rng, 1, 8)}`;
      line = r < 0.85 ? `${ts} INFO  [${worker}] processed batch ${int(rng, 1, 99999)} in ${int(rng, 3, 900)}ms`
        : r < 0.97 ? `${ts} WARN  [${worker}] retrying upload, attempt ${int(rng, 2, 5)} of 5`
        : `${ts} ERROR [${worker}] ${ctx.errcode}: upload failed\n    at Uploader.flush (sync/uploader.js:${int(rng, 10, 400)}:17)\n    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)`;
    }
    lines.push(line);
    size += line.length + 1;
  }
  const intro = kind === "statement"
    ? `Hi, our statement shows charges we can't match to any invoice for ${ctx.product}. Full export below:\n\n`
    : `Hi, ${ctx.product} ${ctx.version} keeps failing during the nightly sync on ${ctx.os}. Full log below:\n\n`;
  return intro + lines.join("\n");
}

/**
 * Build the tickets (CSV rows, in file order) and one label per distinct id.
 *
 * @example
 * const { rows, labels } = generateTickets({ count: 200, seed: 1 });
 */
export function generateTickets(options: GenerateOptions = {}): { rows: Ticket[]; labels: Label[] } {
  const count = options.count ?? DEFAULT_COUNT;
  const rng = mulberry32(options.seed ?? DEFAULT_SEED);
  const categories: [Category, number][] = [["billing", 0.22], ["refund", 0.14], ["bug", 0.24], ["how_to", 0.18], ["account", 0.14], ["other", 0.08]];
  const drawCategory = (): Category => {
    let r = rng();
    for (const [c, w] of categories) if ((r -= w) < 0) return c;
    return "other";
  };
  const special = new Map<number, Kind>();
  const oversized = Math.round(count / 2500);
  const long = Math.max(1, Math.round(count * 0.005));
  while (special.size < oversized + long) {
    const at = int(rng, 0, count - 1);
    if (!special.has(at)) special.set(at, special.size < oversized ? "oversized" : "long_body");
  }

  const rows: Ticket[] = [];
  const labels: Label[] = [];
  let clock = Date.UTC(2024, 0, 2, 8, 0, 0);
  for (let i = 0; i < count; i++) {
    const ctx = context(rng);
    clock += int(rng, 30, 5400) * 1000;
    const id = `T-${String(i + 1).padStart(5, "0")}`;
    let kind: Kind = special.get(i) ?? "normal";
    let intended: Intended;
    let subject: string;
    let body: string;
    const r = rng();
    if (kind === "oversized" || kind === "long_body") {
      const statement = kind === "long_body" && rng() < 0.2;
      intended = statement ? "billing" : "bug";
      subject = statement ? `Unknown charges on our statement (${ctx.product})` : `Nightly sync fails on ${ctx.os}, log attached`;
      body = pastedBody(rng, ctx, kind === "oversized" ? int(rng, 270_000, 290_000) : int(rng, 10_000, 60_000), statement ? "statement" : "log");
    } else if (r < 0.02) {
      [kind, intended] = ["spam", "spam"];
      [subject, body] = pick(rng, SPAM).map((s) => fill(s, ctx)) as [string, string];
    } else if (r < 0.035) {
      [kind, intended] = ["autoreply", "autoreply"];
      ctx.subject = fill(subjectOf(rng, drawCategory()), ctx);
      [subject, body] = pick(rng, AUTOREPLY).map((s) => fill(s, ctx)) as [string, string];
    } else if (r < 0.05) {
      [kind, intended] = ["empty_body", "empty"];
      subject = fill(subjectOf(rng, drawCategory()), ctx);
      body = pick(rng, ["", "", " ", "\n\n", "   \t "]);
    } else if (r < 0.1) {
      const [, category, s, b] = pick(rng, FOREIGN);
      [kind, intended, subject, body] = ["non_english", category, fill(s, ctx), fill(b, ctx)];
    } else {
      intended = drawCategory();
      ({ subject, body } = normalTicket(rng, ctx, intended));
    }
    rows.push({ id, subject, body, customer_email: ctx.email, created_at: new Date(clock).toISOString().replace(".000Z", "Z") });
    labels.push({ id, intended_category: intended, kind });
  }
  return { rows: addDuplicates(rng, rows, labels), labels };
}

/** ~2% exact duplicate rows and a few conflicting ones, each a little after its original (as re-sent tickets are). */
function addDuplicates(rng: Rng, rows: Ticket[], labels: Label[]): Ticket[] {
  const extra = new Map<number, Ticket[]>();
  const conflicting = Math.max(1, Math.round(rows.length * 0.002));
  const exact = Math.max(1, Math.round(rows.length * 0.02));
  const used = new Set<number>();
  const wanted = Math.min(exact + conflicting, labels.filter((l) => l.kind === "normal").length);
  for (let n = 0; n < wanted; ) {
    const i = int(rng, 0, rows.length - 1);
    if (used.has(i) || labels[i]!.kind !== "normal") continue;
    used.add(i);
    const original = rows[i]!;
    const isConflict = n < conflicting;
    const copy = isConflict ? { ...original, body: `${original.body}\n\nUpdate: still waiting on this, any news?` } : { ...original };
    labels[i]!.kind = isConflict ? "conflicting_duplicate" : "duplicate";
    const at = Math.min(rows.length - 1, i + int(rng, 1, 400));
    extra.set(at, [...(extra.get(at) ?? []), copy]);
    n++;
  }
  return rows.flatMap((row, i) => [row, ...(extra.get(i) ?? [])]);
}

/** RFC 4180: quote when needed, double the quotes inside. */
export function csvField(value: string): string {
  return /[",\r\n]|^\s|\s$/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** RFC 4180 CSV, written a block of rows at a time: 1M tickets are more than one string may hold. */
async function writeCsv(path: string, header: readonly string[], rows: Record<string, string>[]): Promise<void> {
  const file = await open(path, "w");
  try {
    await file.write(header.join(",") + "\n");
    for (let i = 0; i < rows.length; i += 10_000) {
      await file.write(rows.slice(i, i + 10_000).map((r) => header.map((h) => csvField(r[h] ?? "")).join(",") + "\n").join(""));
    }
  } finally {
    await file.close();
  }
}

/**
 * Generate and write `tickets.csv` and `tickets.labels.csv` into `dir`.
 *
 * @example
 * await writeTicketFiles(tmpDir, { count: 400, seed: 7 });
 */
export async function writeTicketFiles(dir: string, options: GenerateOptions = {}): Promise<{ tickets: string; labels: string; rows: number; ids: number }> {
  const { rows, labels } = generateTickets(options);
  await mkdir(dir, { recursive: true });
  const tickets = join(dir, "tickets.csv");
  const labelsPath = join(dir, "tickets.labels.csv");
  await writeCsv(tickets, COLUMNS, rows as unknown as Record<string, string>[]);
  await writeCsv(labelsPath, ["id", "intended_category", "kind"], labels as unknown as Record<string, string>[]);
  return { tickets, labels: labelsPath, rows: rows.length, ids: labels.length };
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const count = arg("count") ? Number(arg("count")) : undefined;
  const seed = arg("seed") ? Number(arg("seed")) : undefined;
  if ((count !== undefined && !(Number.isInteger(count) && count > 0)) || (seed !== undefined && !Number.isInteger(seed))) {
    console.error("usage: generate-tickets [--count <positive integer>] [--seed <integer>] [--out <dir>]");
    process.exit(2);
  }
  const out = await writeTicketFiles(arg("out") ?? "examples/data", { count, seed });
  console.log(`wrote ${out.rows} rows (${out.ids} distinct ids) to ${out.tickets} and labels to ${out.labels}`);
}
