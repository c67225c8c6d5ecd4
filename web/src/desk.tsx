// The agent desk (/desk/): log in, status, offers, conversations, thread, reply with quick replies, close, transfer.
import { render } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { Conversation, DeskClient, Json, Message, fromBot } from "./deskclient";
import { Lang, duration, initialLang, percent, rememberLang, t, targetName } from "./i18n";

const MAX_TEXT = 8000; // the protocol's reply limit
const STATUSES = ["available", "busy", "away", "wrap_up"] as const;
const CHANNEL_ICONS: Record<string, string> = { CHANNEL_CHAT: "💬", CHANNEL_EMAIL: "✉️", CHANNEL_PHONE: "📞" };
const CHANNEL_NAMES: Record<string, string> = { CHANNEL_CHAT: "chat", CHANNEL_EMAIL: "email", CHANNEL_PHONE: "phone" };

interface Login {
  token: string;
  tenant_id: string;
  agent_id: string;
  expires_at: number;
}

function savedLogin(): Login | null {
  try {
    return JSON.parse(sessionStorage.getItem("sb-desk-login") ?? "null");
  } catch {
    return null;
  }
}

function App() {
  const [lang, setLang] = useState<Lang>(initialLang());
  const [login, setLogin] = useState<Login | null>(null);
  const [notice, setNotice] = useState("");
  useEffect(() => {
    const saved = savedLogin();
    if (saved && saved.expires_at > Date.now()) setLogin(saved);
    else if (saved) {
      sessionStorage.removeItem("sb-desk-login");
      setNotice(t(lang, "expired"));
    }
  }, []);
  useEffect(() => rememberLang(lang), [lang]);
  const logout = (message = "") => {
    sessionStorage.removeItem("sb-desk-login");
    setLogin(null);
    setNotice(message);
  };
  if (!login) return <LoginForm lang={lang} setLang={setLang} notice={notice} onLogin={setLogin} />;
  return <Desk lang={lang} setLang={setLang} login={login} logout={logout} />;
}

function LangSwitch({ lang, setLang }: { lang: Lang; setLang: (l: Lang) => void }) {
  return (
    <label>
      {t(lang, "language")}{" "}
      <select aria-label={t(lang, "language")} value={lang} onChange={(e) => setLang(e.currentTarget.value as Lang)}>
        <option value="zh">中文</option>
        <option value="en">English</option>
      </select>
    </label>
  );
}

function LoginForm(props: { lang: Lang; setLang: (l: Lang) => void; notice: string; onLogin: (l: Login) => void }) {
  const { lang } = props;
  const [failure, setError] = useState("");
  const error = failure || props.notice;
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const body = Object.fromEntries(["tenant_id", "agent_id", "password"].map((k) => [k, String(form.get(k) ?? "")]));
    try {
      const answer = await fetch("/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      if (!answer.ok) {
        setError(answer.status === 401 ? t(lang, "badLogin") : `${t(lang, "error")}: HTTP ${answer.status}`);
        return;
      }
      const data = await answer.json();
      const login = { ...data, expires_at: Date.now() + data.expires_in * 1000 };
      sessionStorage.setItem("sb-desk-login", JSON.stringify(login));
      props.onLogin(login);
    } catch (err) {
      setError(`${t(lang, "error")}: ${err}`);
    }
  };
  return (
    <>
      <header>
        <h1>switchboard · {t(lang, "deskTitle")}</h1>
        <span class="spacer" />
        <LangSwitch lang={lang} setLang={props.setLang} />
      </header>
      <main>
        <form class="card login" onSubmit={submit}>
          <h2>{t(lang, "login")}</h2>
          {error && <p class="banner error" role="alert">{error}</p>}
          <label for="tenant">{t(lang, "tenant")}</label>
          <input id="tenant" name="tenant_id" required autocomplete="organization" />
          <label for="agent">{t(lang, "agent")}</label>
          <input id="agent" name="agent_id" required autocomplete="username" />
          <label for="password">{t(lang, "password")}</label>
          <input id="password" name="password" type="password" required autocomplete="current-password" />
          <p><button type="submit">{t(lang, "login")}</button></p>
        </form>
      </main>
    </>
  );
}

function useDesk(login: Login, logout: (m: string) => void, lang: Lang): DeskClient {
  const [, tick] = useState(0);
  const client = useMemo(
    () =>
      new DeskClient(login.token, login.tenant_id, login.agent_id, (code) =>
        logout(code === 4012 ? t(lang, "sessionEnded") : t(lang, "expired")),
      ),
    [login.token],
  );
  useEffect(() => {
    const off = client.subscribe(() => tick((n) => n + 1));
    client.connect();
    const clock = window.setInterval(() => tick((n) => n + 1), 1000); // countdowns and waiting times
    return () => {
      off();
      window.clearInterval(clock);
      client.stop();
    };
  }, [client]);
  return client;
}

function Desk(props: { lang: Lang; setLang: (l: Lang) => void; login: Login; logout: (m?: string) => void }) {
  const { lang, login } = props;
  const client = useDesk(login, props.logout, lang);
  const state = client.state;
  const convs = [...state.conversations.values()];
  const wanted = new URLSearchParams(location.search).get("conversation");
  const [selected, setSelected] = useState<string | null>(wanted);
  const configLang = state.config?.language as Lang | undefined;
  useEffect(() => {
    if (configLang && !localStorage.getItem("sb-lang")) props.setLang(configLang);
  }, [configLang]);
  useEffect(() => {
    const keys = (e: KeyboardEvent) => {
      if (!e.altKey || (e.key !== "ArrowDown" && e.key !== "ArrowUp") || !convs.length) return;
      e.preventDefault();
      const at = convs.findIndex((c) => c.id === selected);
      const next = (at + (e.key === "ArrowDown" ? 1 : convs.length - 1)) % convs.length;
      setSelected(convs[next < 0 ? 0 : next].id);
    };
    window.addEventListener("keydown", keys);
    return () => window.removeEventListener("keydown", keys);
  });
  const current = selected ? state.conversations.get(selected) : undefined;
  if (current) client.markRead(current.id);
  const notMine = selected && !current && state.connection === "online" && selected === wanted;
  return (
    <>
      <header>
        <h1>switchboard · {t(lang, "deskTitle")}</h1>
        <span>{login.tenant_id} / {login.agent_id}</span>
        <StatusSwitch client={client} lang={lang} />
        <MyResponses client={client} lang={lang} />
        <span class="spacer" />
        <LangSwitch lang={lang} setLang={props.setLang} />
        <button class="secondary" onClick={() => props.logout()}>{t(lang, "logout")}</button>
      </header>
      <main>
        {state.connection === "offline" && <p class="banner offline" role="status">{t(lang, "offlineBanner")}</p>}
        {state.stopReason === "superseded" && <p class="banner error" role="alert">{t(lang, "superseded")}</p>}
        {notMine && <p class="banner error" role="alert">{t(lang, "notYours", { c: selected })}</p>}
        <Offers client={client} lang={lang} />
        <div class="desk">
          <ConversationList convs={convs} selected={selected} select={setSelected} client={client} lang={lang} />
          {current ? <Thread key={current.id} conv={current} client={client} lang={lang} /> : <section class="card" aria-label={t(lang, "reply")} />}
          {current ? <Context key={`ctx-${current.id}`} conv={current} client={client} lang={lang} /> : <aside class="card" />}
        </div>
      </main>
    </>
  );
}

function MyResponses({ client, lang }: { client: DeskClient; lang: Lang }) {
  const today = client.state.responses;
  if (!today) return null;
  const average = today.average_s === null ? "—" : duration(today.average_s);
  return (
    <span role="status" aria-label={t(lang, "myToday")} data-figure="my-responses">
      {t(lang, "myToday")}: {t(lang, "responseRate", { n: targetName(lang, client.targetFor("")) })} {percent(today.within_rate)} ·{" "}
      {t(lang, "avgResponse")} {average} ({today.responses})
    </span>
  );
}

function StatusSwitch({ client, lang }: { client: DeskClient; lang: Lang }) {
  const { status, statusReason } = client.state;
  const [by, why] = statusReason.split("|");
  return (
    <>
      <label>
        {t(lang, "status")}{" "}
        <select
          aria-label={t(lang, "status")}
          value={status}
          onChange={(e) => void client.command({ type: "set_status", status: e.currentTarget.value })}
        >
          {status === "offline" && <option value="offline">{t(lang, "offline")}</option>}
          {STATUSES.map((s) => <option value={s}>{t(lang, s)}</option>)}
        </select>
      </label>
      {statusReason && <span role="status">({t(lang, "changedBy", { by, why })})</span>}
    </>
  );
}

function Offers({ client, lang }: { client: DeskClient; lang: Lang }) {
  const offers = [...client.state.offers.values()];
  const reasons: Json[] = client.state.config?.decline_reasons ?? [];
  const [reason, setReason] = useState("");
  if (!offers.length) return null;
  return (
    <section class="card offer" aria-label={t(lang, "offers")}>
      <h2>{t(lang, "offers")}</h2>
      {offers.map((o) => (
        <div class="row">
          <strong>{o.message?.customer?.display_name ?? o.id}</strong>
          <span>{o.group}</span>
          <span>{o.message?.text?.slice(0, 80)}</span>
          <span role="timer">{Math.max(0, Math.round((o.deadlineMs - Date.now()) / 1000))} {t(lang, "secondsLeft")}</span>
          <button onClick={() => void client.command({ type: "accept", conversation_id: o.id, epoch: o.epoch })}>{t(lang, "accept")}</button>
          <select aria-label={t(lang, "declineReason")} value={reason} onChange={(e) => setReason(e.currentTarget.value)}>
            <option value="">{t(lang, "declineReason")}</option>
            {reasons.map((r) => <option value={r.code}>{r[lang]}</option>)}
          </select>
          <button class="secondary" onClick={() => void client.command({ type: "decline", conversation_id: o.id, epoch: o.epoch, reason })}>
            {t(lang, "decline")}
          </button>
        </div>
      ))}
    </section>
  );
}

function customerOf(conv: Conversation): Message["customer"] {
  return conv.messages.find((m) => m.customer)?.customer;
}

function ConversationList(props: { convs: Conversation[]; selected: string | null; select: (id: string) => void; client: DeskClient; lang: Lang }) {
  const { lang } = props;
  return (
    <nav class="card" aria-label={t(lang, "conversations")}>
      <h2>{t(lang, "conversations")}</h2>
      {!props.convs.length && <p class="muted">{t(lang, "noConversations")}</p>}
      <ul class="convs" role="listbox" aria-label={t(lang, "conversations")}>
        {props.convs.map((c) => {
          const customer = customerOf(c);
          const waited = c.waitingSinceMs ? (Date.now() - c.waitingSinceMs) / 1000 : 0;
          const target = props.client.targetFor(c.group);
          return (
            <li role="option" tabIndex={0} aria-selected={c.id === props.selected} onClick={() => props.select(c.id)}
                onKeyDown={(e) => e.key === "Enter" && props.select(c.id)} data-conversation={c.id}>
              <span aria-label={CHANNEL_NAMES[c.channel] ?? c.channel}>{CHANNEL_ICONS[c.channel] ?? "•"}</span>{" "}
              <strong>{customer?.display_name || customer?.contact_masked || c.id}</strong>{" "}
              {customer?.member_tier && <span class="muted">{customer.member_tier}</span>}{" "}
              {c.unread > 0 && <span class="unread" aria-label={`${c.unread} unread`}>{c.unread}</span>}
              <div class="muted">
                {c.group}
                {waited > 0 && <> · <span class={waited > target ? "late" : ""} data-waiting={waited > target ? "late" : "ok"} title={`≤ ${target}s`}>{t(lang, "waiting")} {duration(waited)}</span></>}
              </div>
            </li>
          );
        })}
      </ul>
    </nav>
  );
}

function MessageView({ m, lang }: { m: Message; lang: Lang }) {
  const at = m.received_at || m.sent_at;
  const text = m.text ?? "";
  // E-mail: quoted lines (">") and everything after "On ... wrote:" are folded.
  const lines = text.split("\n");
  const cut = lines.findIndex((l) => l.startsWith(">") || /^On .* wrote:$|^在.*写道：?$/.test(l));
  const body = m.email && cut >= 0 ? lines.slice(0, cut).join("\n") : text;
  const quoted = m.email && cut >= 0 ? lines.slice(cut).join("\n") : "";
  return (
    <div class={`msg${m.fromAgent ? " agent" : ""}${fromBot(m) ? " bot" : ""}${m.phone && !m.phone.is_final && m.kind !== "MESSAGE_KIND_TRANSCRIPT" && m.phone.speaker ? " partial" : ""}`}>
      {at && <time dateTime={at}>{new Date(at).toLocaleTimeString()} </time>}
      {fromBot(m) && <span class="muted">[{t(lang, "bot")}] </span>}
      {m.phone?.speaker && <span class="muted">[{m.phone.speaker}] </span>}
      {m.email?.subject && <div><strong>{t(lang, "subject")}: {m.email.subject}</strong></div>}
      {body}
      {quoted && <details><summary>{t(lang, "quoted")}</summary>{quoted}</details>}
    </div>
  );
}

function Thread({ conv, client, lang }: { conv: Conversation; client: DeskClient; lang: Lang }) {
  const config = client.state.config;
  const [text, setText] = useState("");
  const [error, setError] = useState("");
  const [wrap, setWrap] = useState("");
  const [query, setQuery] = useState<string | null>(null);
  const [pick, setPick] = useState(0);
  const [toAgent, setToAgent] = useState("");
  const [toGroup, setToGroup] = useState("");
  const [note, setNote] = useState("");
  const lastTyping = useRef(0);
  const end = useRef<HTMLDivElement>(null);
  useEffect(() => end.current?.scrollIntoView({ block: "end" }), [conv.messages.length, conv.live.size]);
  const phrases: Json[] = (config?.quick_replies ?? []).filter((q: Json) => !q.group || q.group === conv.group);
  const matches = query === null ? [] : phrases.filter((q) => q.key.includes(query) || q.text.includes(query));
  const tooLong = text.length > MAX_TEXT;
  const onInput = (value: string) => {
    setText(value);
    const slash = value.match(/(?:^|\s)\/(\S*)$/);
    setQuery(slash ? slash[1] : null);
    setPick(0);
    if (conv.channel === "CHANNEL_CHAT" && Date.now() - lastTyping.current > 3000 && value.length <= MAX_TEXT) {
      lastTyping.current = Date.now();
      void client.command({ type: "typing", conversation_id: conv.id });
    }
  };
  const insert = (q: Json) => {
    setText(text.replace(/\/\S*$/, "") + q.text);
    setQuery(null);
  };
  const send = async () => {
    if (!text.trim() || tooLong) return;
    const answer = await client.command({ type: "reply", conversation_id: conv.id, epoch: conv.epoch, text });
    if (answer.type === "result") {
      client.noteReply(conv.id, text);
      setText("");
      setError("");
    } else setError(`${answer.code}: ${answer.detail}`);
  };
  const onKey = (e: KeyboardEvent) => {
    if (matches.length && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
      e.preventDefault();
      setPick((pick + (e.key === "ArrowDown" ? 1 : matches.length - 1)) % matches.length);
    } else if (matches.length && (e.key === "Enter" || e.key === "Tab")) {
      e.preventDefault();
      insert(matches[pick]);
    } else if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      void send();
    }
  };
  const close = async () => {
    if (config?.wrap_up_required && !wrap) {
      setError(t(lang, "wrapRequired"));
      return;
    }
    const answer = await client.command({ type: "close", conversation_id: conv.id, epoch: conv.epoch, wrap_up_code: wrap || "none" });
    if (answer.type === "error") setError(`${answer.code}: ${answer.detail}`);
  };
  const transfer = async () => {
    const target = toAgent ? { to_agent: toAgent } : { to_group: toGroup };
    const answer = await client.command({ type: "transfer", conversation_id: conv.id, epoch: conv.epoch, note, ...target });
    if (answer.type === "error") setError(`${answer.code}: ${answer.detail}`);
  };
  const canReply = conv.channel !== "CHANNEL_PHONE";
  return (
    <section class="card" aria-label={`${t(lang, "reply")} ${conv.id}`}>
      <h2>{CHANNEL_ICONS[conv.channel]} {customerOf(conv)?.display_name ?? conv.id} <span class="muted">{conv.group}</span></h2>
      <div class="thread" aria-live="polite">
        {conv.messages.map((m) => <MessageView m={m} lang={lang} />)}
        {conv.live.size > 0 && <div aria-label={t(lang, "transcript")}>{[...conv.live.values()].map((m) => <MessageView m={m} lang={lang} />)}</div>}
        <div ref={end} />
      </div>
      {error && <p class="banner error" role="alert">{error}</p>}
      {canReply && (
        <div class="reply">
          <label for="reply-text">{t(lang, "reply")} · <span class="muted">{t(lang, "quickReplies")}</span></label>
          <textarea id="reply-text" value={text} onInput={(e) => onInput(e.currentTarget.value)} onKeyDown={onKey} aria-invalid={tooLong} />
          {tooLong && <p class="banner error" role="alert">{t(lang, "tooLong", { n: MAX_TEXT, m: text.length })}</p>}
          {matches.length > 0 && (
            <ul class="quick" role="listbox" aria-label={t(lang, "quickReplies")}>
              {matches.map((q, i) => (
                <li role="option" aria-selected={i === pick} onClick={() => insert(q)}>/{q.key} — {q.text}</li>
              ))}
            </ul>
          )}
          <div class="row"><button onClick={() => void send()} disabled={tooLong}>{t(lang, "send")}</button><span class="muted">Ctrl+Enter</span></div>
        </div>
      )}
      <div class="row">
        <select aria-label={t(lang, "wrapUpCode")} value={wrap} onChange={(e) => setWrap(e.currentTarget.value)}>
          <option value="">{t(lang, "wrapUpCode")}: {t(lang, "chooseCode")}</option>
          {(config?.wrap_up_codes ?? []).map((c: Json) => <option value={c.code}>{c[lang]}</option>)}
        </select>
        <button onClick={() => void close()}>{t(lang, "close")}</button>
      </div>
      <div class="row">
        <input aria-label={t(lang, "toAgent")} placeholder={t(lang, "toAgent")} value={toAgent} onInput={(e) => setToAgent(e.currentTarget.value)} />
        <input aria-label={t(lang, "toGroup")} placeholder={t(lang, "toGroup")} value={toGroup} onInput={(e) => setToGroup(e.currentTarget.value)} />
        <input aria-label={t(lang, "note")} placeholder={t(lang, "note")} value={note} maxLength={2000} onInput={(e) => setNote(e.currentTarget.value)} />
        <button class="secondary" disabled={!toAgent && !toGroup} onClick={() => void transfer()}>{t(lang, "transfer")}</button>
      </div>
    </section>
  );
}

// The order's status as a signed source stated it, else an order card's own status marked unverified.
function orderStatus(conv: Conversation, lang: Lang): string {
  const latest = [...conv.messages].reverse();
  const stated = latest.find((m) => m.commerce?.order_status)?.commerce?.order_status;
  if (stated) return stated;
  const card = latest.find((m) => m.attributes?.card_order_status)?.attributes?.card_order_status;
  return card ? `${card} (${t(lang, "unverified")})` : t(lang, "none");
}

function Context({ conv, client, lang }: { conv: Conversation; client: DeskClient; lang: Lang }) {
  const [context, setContext] = useState<Json | null>(null);
  useEffect(() => {
    void client.command({ type: "context", conversation_id: conv.id }).then((r) => {
      if (r.type === "result") setContext(r);
    });
  }, [conv.id]);
  const commerce = [...conv.messages].reverse().find((m) => m.commerce)?.commerce;
  const first = conv.messages[0];
  const customer = customerOf(conv);
  return (
    <aside class="card" aria-label={t(lang, "order")}>
      <h2>{t(lang, "order")}</h2>
      <dl>
        <dt>{t(lang, "order")}</dt><dd>{commerce?.order_id || t(lang, "none")}</dd>
        <dt>{t(lang, "orderStatus")}</dt><dd>{orderStatus(conv, lang)}</dd>
        {commerce?.dispute_stage && <><dt>{t(lang, "dispute")}</dt><dd>{commerce.dispute_stage}</dd></>}
        <dt>SKU</dt><dd>{commerce?.sku || t(lang, "none")}</dd>
        <dt>{t(lang, "platform")}</dt><dd>{commerce?.platform || t(lang, "none")}</dd>
        <dt>{t(lang, "language")}</dt><dd>{first?.language || t(lang, "none")}</dd>
        <dt>{t(lang, "tier")}</dt>
        <dd>{customer?.member_tier ? `${customer.member_tier}${customer.tier_source ? ` (${customer.tier_source})` : ""}` : t(lang, "none")}</dd>
      </dl>
      {context?.transfer_note && (
        <p class="banner info"><strong>{t(lang, "transferNote")}</strong> ({context.transfer_note.from_agent}): {context.transfer_note.note}</p>
      )}
      <h3>{t(lang, "history")}</h3>
      {!context?.history?.length && <p class="muted">{t(lang, "noHistory")}</p>}
      <ul>
        {(context?.history ?? []).map((h: Json) => (
          <li>{new Date(h.closed_ms).toLocaleString()} · {h.skill_group} · {h.agent_id} · {h.wrap_up_code}</li>
        ))}
      </ul>
    </aside>
  );
}

render(<App />, document.getElementById("app")!);
