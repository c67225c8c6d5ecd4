// The supervisor board (/board/): live figures per skill group, 30-minute charts (uPlot), agents, surge and
// capacity controls, and read-only monitoring of any conversation of the supervisor's shop.
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import { Lang, duration, initialLang, percent, rememberLang, t, targetName } from "./i18n";

type Json = Record<string, any>;
interface Login {
  tenant_id: string;
  token: string;
}

class BoardError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function api(login: Login, path: string, init: RequestInit = {}): Promise<Json> {
  const answer = await fetch(`/v1/board/tenants/${encodeURIComponent(login.tenant_id)}/${path}`, {
    ...init,
    headers: { Authorization: `Bearer ${login.token}`, "Content-Type": "application/json" },
  });
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new BoardError(answer.status, typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
  return body;
}

function App() {
  const [lang, setLang] = useState<Lang>(initialLang());
  const [login, setLogin] = useState<Login | null>(() => JSON.parse(sessionStorage.getItem("sb-board-login") ?? "null"));
  const [notice, setNotice] = useState("");
  useEffect(() => rememberLang(lang), [lang]);
  const signOut = (message: string) => {
    sessionStorage.removeItem("sb-board-login");
    setLogin(null);
    setNotice(message);
  };
  return (
    <>
      <header>
        <h1>switchboard · {t(lang, "boardTitle")}</h1>
        {login && <span>{login.tenant_id}</span>}
        <span class="spacer" />
        <label>
          {t(lang, "language")}{" "}
          <select aria-label={t(lang, "language")} value={lang} onChange={(e) => setLang(e.currentTarget.value as Lang)}>
            <option value="zh">中文</option>
            <option value="en">English</option>
          </select>
        </label>
        {login && <button class="secondary" onClick={() => signOut("")}>{t(lang, "logout")}</button>}
      </header>
      <main>
        {login ? <Board lang={lang} login={login} signOut={signOut} /> : <SignIn lang={lang} notice={notice} onLogin={setLogin} />}
      </main>
    </>
  );
}

function SignIn({ lang, notice, onLogin }: { lang: Lang; notice: string; onLogin: (l: Login) => void }) {
  const [error, setError] = useState(notice);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const login = { tenant_id: String(form.get("tenant_id") ?? ""), token: String(form.get("token") ?? "") };
    const answer = await fetch("/v1/board/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(login) });
    if (answer.status === 401) return setError(t(lang, "unknownToken"));
    if (answer.status === 403) return setError(t(lang, "forbidden", { t: login.tenant_id }));
    if (!answer.ok) return setError(`${t(lang, "error")}: HTTP ${answer.status}`);
    sessionStorage.setItem("sb-board-login", JSON.stringify(login));
    onLogin(login);
  };
  return (
    <form class="card login" onSubmit={submit}>
      <h2>{t(lang, "login")}</h2>
      {error && <p class="banner error" role="alert">{error}</p>}
      <label for="tenant">{t(lang, "tenant")}</label>
      <input id="tenant" name="tenant_id" required />
      <label for="token">{t(lang, "token")}</label>
      <input id="token" name="token" type="password" required />
      <p><button type="submit">{t(lang, "login")}</button></p>
    </form>
  );
}

function Board({ lang, login, signOut }: { lang: Lang; login: Login; signOut: (m: string) => void }) {
  const [groups, setGroups] = useState<Json | null>(null);
  const [agents, setAgents] = useState<Json | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    let live = true;
    const poll = async () => {
      try {
        const [g, a] = await Promise.all([api(login, "groups"), api(login, "agents")]);
        if (!live) return;
        setGroups(g);
        setAgents(a);
        setError("");
      } catch (err) {
        if (err instanceof BoardError && err.status === 401) return signOut(t(lang, "unknownToken"));
        if (err instanceof BoardError && err.status === 403) return signOut(t(lang, "forbidden", { t: login.tenant_id }));
        setError(`${t(lang, "error")}: ${err}`);
      }
    };
    void poll();
    const timer = window.setInterval(poll, 2000);
    return () => {
      live = false;
      window.clearInterval(timer);
    };
  }, [login.token, login.tenant_id]);
  return (
    <>
      {error && <p class="banner error" role="alert">{error}</p>}
      <Controls lang={lang} login={login} />
      <section aria-label={t(lang, "groups")}>
        <h2>{t(lang, "groups")}</h2>
        <div class="groups">{(groups?.groups ?? []).map((g: Json) => <GroupCard g={g} lang={lang} />)}</div>
      </section>
      {groups && <Charts groups={groups.groups} lang={lang} />}
      {agents && <Agents agents={agents} lang={lang} />}
      <Monitor lang={lang} login={login} />
    </>
  );
}

const CHANNEL_ICONS: Record<string, string> = { chat: "💬", email: "✉️", phone: "📞" };

function GroupCard({ g, lang }: { g: Json; lang: Lang }) {
  const level = g.service_level === null ? "—" : `${Math.round(g.service_level * 100)}%`;
  return (
    <div class="card" data-group={g.skill_group} aria-label={g.skill_group}>
      <h3>{g.skill_group}</h3>
      <div>{t(lang, "waiting")}: <span class="figure" data-figure="waiting">{g.waiting}</span>{" "}
        <span class="muted">(💬{g.waiting_by_channel.chat} ✉️{g.waiting_by_channel.email} 📞{g.waiting_by_channel.phone})</span></div>
      <div>{t(lang, "longest")}: {duration(g.oldest_wait_s)}</div>
      <div>{t(lang, "serviceLevel")}: <span data-figure="service-level">{level}</span>{" "}
        <span class="muted">(≤ {g.service_level_target_s}s, 15 min; {t(lang, "abandoned")} {g.abandoned ?? 0})</span></div>
      <div>{t(lang, "estWait")}: {g.estimated_wait_s === null ? "—" : duration(g.estimated_wait_s)}{" "}
        <span class="muted">{Object.entries((g.estimated_wait_by_channel ?? {}) as Record<string, number>)
          .filter(([c]) => g.waiting_by_channel[c] > 0)
          .map(([c, w]) => `${CHANNEL_ICONS[c] ?? c}${duration(w)}`).join(" ")}</span></div>
      <div>{t(lang, "occupancy")}: {Math.round(g.occupancy * 100)}%</div>
      {g.responses_today && <GroupResponses g={g} lang={lang} />}
      <div class="muted">
        {Object.entries(g.agents_by_status as Record<string, number>).map(([s, n]) => `${t(lang, s as any)} ${n}`).join(" · ")}
      </div>
    </div>
  );
}

function GroupResponses({ g, lang }: { g: Json; lang: Lang }) {
  const today = g.responses_today;
  const window = g.responses_window;
  const average = (s: number | null) => (s === null ? "—" : duration(s));
  return (
    <div data-figure="responses">
      <div>
        {t(lang, "responseRate", { n: targetName(lang, g.response_target_s) })}: {" "}
        <span class="figure" data-figure="response-rate">{percent(today.within_rate)}</span>{" "}
        <span class="muted">({t(lang, "today")}, {today.within_target}/{today.responses}; 15 min {percent(window.within_rate)})</span>
      </div>
      <div>
        {t(lang, "avgResponse")}: <span data-figure="response-average">{average(today.average_s)}</span>{" "}
        <span class="muted">({t(lang, "firstResponse")} {average(today.first_average_s)}; 15 min {average(window.average_s)})</span>
      </div>
    </div>
  );
}

function Chart(props: { title: string; groups: Json[]; pick: (p: Json) => number | null; range?: [number, number] }) {
  const { title, groups, pick } = props;
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const times = groups[0]?.series.map((p: Json) => p.at_ms / 1000) ?? [];
  const data: uPlot.AlignedData = [times, ...groups.map((g) => g.series.map(pick))];
  const names = groups.map((g) => g.skill_group).join(",");
  useEffect(() => {
    if (!box.current) return;
    const colors = ["#0b5cad", "#b3261e", "#1e6b34", "#8a4b00", "#6a1b9a", "#00695c", "#37474f"];
    plot.current?.destroy();
    plot.current = new uPlot(
      {
        title,
        width: Math.min(560, box.current.clientWidth || 380),
        height: 200,
        scales: props.range ? { y: { range: props.range } } : undefined,
        series: [{}, ...groups.map((g, i) => ({ label: g.skill_group, stroke: colors[i % colors.length] }))],
      },
      data,
      box.current,
    );
    return () => plot.current?.destroy();
  }, [names, title]);
  useEffect(() => plot.current?.setData(data));
  return <div class="card" ref={box} role="img" aria-label={title} />;
}

function Charts({ groups, lang }: { groups: Json[]; lang: Lang }) {
  if (!groups.length) return null;
  return (
    <section class="charts" aria-label="30 min">
      <Chart title={`${t(lang, "arrivals")} (30 min)`} groups={groups} pick={(p) => p.arrivals} />
      <Chart title={`${t(lang, "queueDepth")} (30 min)`} groups={groups} pick={(p) => p.waiting} />
      <Chart title={`${t(lang, "serviceLevel")} (30 min)`} groups={groups} pick={(p) => p.service_level} range={[0, 1]} />
    </section>
  );
}

// "presales 5 · orders 4 · general": each group the agent serves with its level; a group without one (a surge
// pool's, or none given) counts at the router's default level.
function skills(a: Json): string {
  const levels = (a.proficiency ?? {}) as Record<string, number>;
  return (a.groups as string[]).map((g) => (levels[g] ? `${g} ${levels[g]}` : g)).join(" · ");
}

function Agents({ agents, lang }: { agents: Json; lang: Lang }) {
  return (
    <section class="card" aria-label={t(lang, "agents")}>
      <h2>{t(lang, "agents")}</h2>
      <table>
        <thead><tr><th>{t(lang, "agent")}</th><th>{t(lang, "status")}</th><th>{t(lang, "inStatus")}</th><th>{t(lang, "skills")}</th><th>{t(lang, "load")}</th><th>{t(lang, "current")}</th><th>{t(lang, "responseRateToday")}</th><th>{t(lang, "avgResponse")}</th></tr></thead>
        <tbody>
          {agents.agents.map((a: Json) => (
            <tr data-agent={a.agent_id}>
              <td>{a.display_name || a.agent_id}</td>
              <td>{t(lang, a.status)}</td>
              <td>{a.status_since_ms ? duration((agents.now_ms - a.status_since_ms) / 1000) : "—"}</td>
              <td data-figure="agent-skills">{skills(a)}</td>
              <td>{["chat", "email", "phone"].map((c) => `${c} ${a.used[c] ?? 0}/${a.effective_capacity[c] ?? 0}`).join(" · ")}</td>
              <td>{a.conversations.join(", ")}</td>
              <td data-figure="agent-response-rate">{percent(a.responses_today?.within_rate)} <span class="muted">({a.responses_today?.responses ?? 0})</span></td>
              <td data-figure="agent-response-average">{a.responses_today?.average_s == null ? "—" : duration(a.responses_today.average_s)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Controls({ lang, login }: { lang: Lang; login: Login }) {
  const [surge, setSurge] = useState<Json | null>(null);
  const [profile, setProfile] = useState("");
  const [factor, setFactor] = useState("1.5");
  const [message, setMessage] = useState("");
  const load = () => api(login, "operator/surge").then(setSurge).catch((e) => setMessage(String(e.message)));
  useEffect(() => void load(), [login.token]);
  const act = async (path: string, body: Json) => {
    try {
      const answer = await api(login, `operator/${path}`, { method: "POST", body: JSON.stringify(body) });
      setMessage(`${path}: ${answer.changed?.length ?? 0} agents`);
      void load();
    } catch (e) {
      setMessage(String((e as Error).message));
    }
  };
  const profiles = Object.keys(surge?.profiles ?? {});
  return (
    <section class="card" aria-label={t(lang, "surge")}>
      <div class="row">
        <strong>{t(lang, "surge")}</strong>
        <span>{t(lang, "active")}: {surge?.active_profile || t(lang, "none")}</span>
        <select aria-label={t(lang, "surge")} value={profile} onChange={(e) => setProfile(e.currentTarget.value)}>
          <option value="">—</option>
          {profiles.map((p) => <option value={p}>{p}</option>)}
        </select>
        <button disabled={!profile} onClick={() => void act("surge/activate", { profile })}>{t(lang, "activate")}</button>
        <button class="secondary" onClick={() => void act("surge/deactivate", {})}>{t(lang, "deactivate")}</button>
        <label>{t(lang, "capacity")} <input aria-label={t(lang, "capacity")} type="number" min="0.1" max="10" step="0.1" value={factor} onInput={(e) => setFactor(e.currentTarget.value)} /></label>
        <button onClick={() => void act("capacity", { factor: Number(factor) })}>{t(lang, "apply")}</button>
      </div>
      {message && <p class="muted" role="status">{message}</p>}
    </section>
  );
}

function Monitor({ lang, login }: { lang: Lang; login: Login }) {
  const [id, setId] = useState(new URLSearchParams(location.search).get("conversation") ?? "");
  const [conv, setConv] = useState<Json | null>(null);
  const [error, setError] = useState("");
  const open = async (which: string) => {
    if (!which) return;
    try {
      setConv(await api(login, `conversations/${encodeURIComponent(which)}`));
      setError("");
    } catch (e) {
      setConv(null);
      setError(e instanceof BoardError && e.status === 404 ? t(lang, "notFound", { c: which }) : String((e as Error).message));
    }
  };
  useEffect(() => void open(id), []);
  return (
    <section class="card" aria-label={t(lang, "monitor")}>
      <h2>{t(lang, "monitor")}</h2>
      <div class="row">
        <input aria-label={t(lang, "monitor")} value={id} onInput={(e) => setId(e.currentTarget.value)} />
        <button onClick={() => void open(id)}>{t(lang, "open")}</button>
      </div>
      {error && <p class="banner error" role="alert">{error}</p>}
      {conv && (
        <div>
          <p class="muted">{conv.state} · {conv.owner || conv.offer_agent || "—"} · {conv.skill_group} · {conv.channel}</p>
          {conv.responses && (
            <p class="muted" data-figure="conversation-responses">
              {t(lang, "firstResponse")} {conv.responses.first_response_s === null ? "—" : duration(conv.responses.first_response_s)} ·{" "}
              {t(lang, "avgResponse")} {conv.responses.average_s === null ? "—" : duration(conv.responses.average_s)} ·{" "}
              {t(lang, "responses")} {conv.responses.responses}
            </p>
          )}
          {conv.messages.map((m: Json) => <div class="msg">{m.text}</div>)}
        </div>
      )}
    </section>
  );
}

render(<App />, document.getElementById("app")!);
