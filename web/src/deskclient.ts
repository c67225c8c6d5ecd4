// The desk's connection to the gateway, built only on docs/desktop-protocol.md: auth frame, snapshot, events by
// seq (duplicates dropped), cumulative acks, heartbeats, resume_after on reconnect, and the close codes' rules.

export type Json = Record<string, any>;

export interface Message {
  message_id?: string;
  text?: string;
  kind?: string;
  channel?: string;
  language?: string;
  received_at?: string;
  sent_at?: string;
  // tier_source: where member_tier came from ("webhook", "widget_token", "lookup", "config"), docs/customer-lookup.md
  customer?: {
    customer_id?: string; display_name?: string; member_tier?: string; contact_masked?: string; tier_source?: string;
  };
  commerce?: {
    order_id?: string; order_status?: string; sku?: string; platform?: string; category?: string;
    dispute_stage?: string; facts_source?: string;
  };
  email?: { subject?: string };
  phone?: { call_id?: string; is_final?: boolean; speaker?: string; segment_seq?: string | number; event?: string };
  attributes?: Record<string, string>; // sender "bot": the bot's answer in the thread (docs/desktop-protocol.md)
  fromAgent?: boolean;
}

/** The bot's answer kept in a conversation's thread, not a customer message. */
export function fromBot(m: Message): boolean {
  return m.attributes?.sender === "bot";
}

export interface Conversation {
  id: string;
  epoch: number;
  group: string;
  channel: string;
  messages: Message[];
  live: Map<string, Message>; // phone: partial transcript segments by call + segment, replaced by finals
  unread: number;
  waitingSinceMs: number; // the customer's oldest unanswered message (0: answered)
}

export interface Offer {
  id: string;
  epoch: number;
  deadlineMs: number;
  group: string;
  message?: Message;
}

export type Connection = "connecting" | "online" | "offline" | "stopped";

export interface DeskState {
  conversations: Map<string, Conversation>;
  offers: Map<string, Offer>;
  status: string;
  statusReason: string;
  connection: Connection;
  stopReason: string; // why the desk stopped reconnecting (4009 ...), shown to the agent
  config: Json | null;
  // The response target in force per skill group (seconds), from desk_config and every queue_stats frame.
  targets: Map<string, number>;
  // The agent's own responses today (response_stats), refreshed after replies and every half minute.
  responses: Json | null;
  agentId: string;
  tenantId: string;
}

const HEARTBEAT_MS = 12_000;
const RESPONSE_STATS_MS = 30_000;
const DEFAULT_TARGET_S = 180;

function messageMs(m: Message): number {
  const at = m.received_at || m.sent_at;
  return at ? Date.parse(at) : Date.now();
}

export class DeskClient {
  state: DeskState;
  private ws: WebSocket | null = null;
  private applied = 0; // last seq applied
  private acked = 0; // last seq acked
  private resume: number | null = null; // resume_after for the next connect
  private pending = new Map<string, { resolve: (f: Json) => void }>();
  private nextId = 1;
  private heartbeat: number | undefined;
  private statsTimer: number | undefined;
  private ackTimer: number | undefined;
  private retryMs = 500;
  private listeners = new Set<() => void>();

  constructor(private token: string, tenantId: string, agentId: string, private onAuthLost: (code: number) => void) {
    this.state = {
      conversations: new Map(),
      offers: new Map(),
      status: "offline",
      statusReason: "",
      connection: "connecting",
      stopReason: "",
      config: null,
      targets: new Map(),
      responses: null,
      agentId,
      tenantId,
    };
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }

  connect(): void {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/desk`);
    this.ws = ws;
    this.state.connection = "connecting";
    ws.onopen = () => {
      const hello: Json = { type: "auth", token: this.token, tenant: this.state.tenantId };
      if (this.resume !== null) hello.resume_after = this.resume;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (e) => this.onFrame(JSON.parse(String(e.data)));
    ws.onclose = (e) => this.onClose(e.code, e.reason);
    this.changed();
  }

  stop(): void {
    this.state.connection = "stopped";
    window.clearInterval(this.heartbeat);
    window.clearInterval(this.statsTimer);
    this.ws?.close(1000, "logout");
  }

  /** Send a command and wait for its result or error frame. */
  command(frame: Json): Promise<Json> {
    const id = `c${Date.now().toString(36)}-${this.nextId++}`;
    return new Promise((resolve) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        resolve({ type: "error", code: "offline", detail: "not connected" });
        return;
      }
      this.pending.set(id, { resolve });
      this.ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  private onFrame(frame: Json): void {
    if (frame.type === "snapshot") this.onSnapshot(frame);
    else if (frame.type === "event") this.onEvent(frame);
    else if (frame.type === "queue_stats") {
      if (typeof frame.response_target_s === "number") this.state.targets.set(frame.skill_group, frame.response_target_s);
    } else if (frame.type === "result" || frame.type === "error") {
      const waiter = this.pending.get(frame.id);
      this.pending.delete(frame.id);
      waiter?.resolve(frame);
    }
    this.changed();
  }

  private onSnapshot(frame: Json): void {
    this.state.connection = "online";
    this.retryMs = 500;
    this.state.status = frame.status;
    if (!frame.resumed) {
      // A fresh start (or our resume point was gone): the snapshot replaces what we held.
      this.state.conversations = new Map();
      this.state.offers = new Map();
      for (const c of frame.conversations as Json[]) {
        const conv = this.conversation(c.conversation_id, c.epoch, c.skill_group, c.channel);
        for (const m of c.messages as Message[]) this.addMessage(conv, m, false);
        // Our replies are not in the snapshot: the gateway says up to when the customer's messages are answered.
        // The bot's answer in the thread answered what the customer wrote before it.
        const answered = Math.max(Number(c.answered_ms ?? 0), ...conv.messages.filter(fromBot).map(messageMs));
        const waiting = conv.messages.filter(
          (m) => !m.fromAgent && !fromBot(m) && m.kind !== "MESSAGE_KIND_CALL_EVENT" && messageMs(m) > answered,
        );
        conv.waitingSinceMs = waiting.length ? Math.min(...waiting.map(messageMs)) : 0;
      }
      for (const o of frame.offers as Json[]) this.addOffer(o);
    }
    this.applied = frame.as_of_seq;
    this.acked = frame.as_of_seq;
    window.clearInterval(this.heartbeat);
    this.heartbeat = window.setInterval(() => void this.command({ type: "heartbeat" }), HEARTBEAT_MS);
    if (!this.state.config) {
      void this.command({ type: "desk_config" }).then((r) => {
        if (r.type !== "result") return;
        this.state.config = r.config;
        for (const [group, target] of Object.entries(r.config.response_targets ?? {})) {
          if (!this.state.targets.has(group)) this.state.targets.set(group, Number(target));
        }
        this.changed();
      });
    }
    this.refreshResponses();
    window.clearInterval(this.statsTimer);
    this.statsTimer = window.setInterval(() => this.refreshResponses(), RESPONSE_STATS_MS);
  }

  /** The response target in force for a conversation's group (seconds): past it, a waiting message is late. */
  targetFor(group: string): number {
    return this.state.targets.get(group) ?? Number(this.state.config?.response_target_s ?? DEFAULT_TARGET_S);
  }

  refreshResponses(): void {
    void this.command({ type: "response_stats" }).then((r) => {
      if (r.type !== "result") return;
      this.state.responses = r.today;
      this.changed();
    });
  }

  private conversation(id: string, epoch: number, group: string, channel: string): Conversation {
    let conv = this.state.conversations.get(id);
    if (!conv) {
      conv = { id, epoch, group, channel, messages: [], live: new Map(), unread: 0, waitingSinceMs: 0 };
      this.state.conversations.set(id, conv);
    }
    conv.epoch = Math.max(conv.epoch, epoch || 0);
    conv.group = group || conv.group;
    conv.channel = channel || conv.channel;
    return conv;
  }

  private addMessage(conv: Conversation, m: Message, unread: boolean): void {
    if (m.message_id && conv.messages.some((x) => x.message_id === m.message_id)) return; // shown once
    if (m.phone && m.phone.call_id && m.phone.segment_seq !== undefined) {
      conv.live.delete(`${m.phone.call_id}/${m.phone.segment_seq}`); // the final replaces its partials
    }
    conv.messages.push(m);
    if (fromBot(m)) conv.waitingSinceMs = 0; // the bot answered what the customer wrote so far
    else if (!conv.waitingSinceMs && m.kind !== "MESSAGE_KIND_CALL_EVENT") conv.waitingSinceMs = messageMs(m);
    if (unread) conv.unread += 1;
  }

  private addOffer(o: Json): void {
    this.state.offers.set(o.conversation_id, {
      id: o.conversation_id,
      epoch: o.epoch,
      deadlineMs: o.offer_deadline_ms || (o.offer_deadline ? Date.parse(o.offer_deadline) : Date.now() + 20000),
      group: o.skill_group,
      message: o.message,
    });
  }

  private onEvent(frame: Json): void {
    if (frame.seq <= this.applied) return; // a duplicate after a resume: already applied
    this.applied = frame.seq;
    const id: string = frame.conversation_id;
    switch (frame.event) {
      case "offer":
        this.addOffer(frame);
        flashTitle();
        break;
      case "assigned": {
        this.state.offers.delete(id);
        const conv = this.conversation(id, frame.epoch, frame.skill_group, frame.message?.channel ?? "");
        if (frame.message) this.addMessage(conv, frame.message, true);
        break;
      }
      case "message": {
        const conv = this.conversation(id, frame.epoch, frame.skill_group ?? "", frame.message?.channel ?? "");
        this.addMessage(conv, frame.message, true);
        break;
      }
      case "transcript": {
        const conv = this.state.conversations.get(id);
        const m: Message = frame.message;
        if (conv && m.phone) conv.live.set(`${m.phone.call_id}/${m.phone.segment_seq}`, m);
        break;
      }
      case "closed":
      case "transferred":
        this.state.conversations.delete(id);
        this.state.offers.delete(id);
        break;
      case "revoked":
        this.state.offers.delete(id);
        break;
      case "status":
        this.state.status = frame.status;
        this.state.statusReason = frame.attributes?.changed_by && frame.attributes.changed_by !== "agent"
          ? `${frame.attributes.changed_by}|${frame.attributes.reason ?? ""}` : "";
        break;
    }
    this.scheduleAck();
  }

  private scheduleAck(): void {
    if (this.ackTimer !== undefined) return;
    this.ackTimer = window.setTimeout(() => {
      this.ackTimer = undefined;
      if (this.applied > this.acked && this.ws?.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({ type: "ack", seq: this.applied }));
        this.acked = this.applied;
      }
    }, 200);
  }

  /** Our own reply, shown in the thread; the customer's wait ends. */
  noteReply(convId: string, text: string): void {
    const conv = this.state.conversations.get(convId);
    if (!conv) return;
    conv.messages.push({ text, fromAgent: true, sent_at: new Date().toISOString() });
    conv.waitingSinceMs = 0;
    this.changed();
    window.setTimeout(() => this.refreshResponses(), 300); // the reply was counted once it was sent
  }

  markRead(convId: string): void {
    const conv = this.state.conversations.get(convId);
    if (conv && conv.unread) {
      conv.unread = 0;
      this.changed();
    }
  }

  private onClose(code: number, reason: string): void {
    window.clearInterval(this.heartbeat);
    window.clearInterval(this.statsTimer);
    for (const waiter of this.pending.values()) waiter.resolve({ type: "error", code: "offline", detail: reason });
    this.pending.clear();
    if (this.state.connection === "stopped") return;
    if (code === 4009) {
      // Superseded by a newer session: never reconnect on our own (the two would keep fencing each other).
      this.state.connection = "stopped";
      this.state.stopReason = "superseded";
      this.changed();
      return;
    }
    if ([4001, 4002, 4004, 4005, 4012].includes(code)) {
      this.state.connection = "stopped";
      this.onAuthLost(code);
      return;
    }
    // 4011: our unread events were dropped; start over from a fresh snapshot. Anything else: resume after the ack.
    this.resume = code === 4011 ? null : this.applied;
    if (code === 4011) this.applied = 0;
    this.state.connection = "offline";
    this.changed();
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 15_000);
    // 1012: the replica is restarting or draining (docs/desktop-protocol.md §3): reconnect at once, to another
    // replica, after a random pause of up to a second so desks closed together do not all arrive together.
    window.setTimeout(() => this.connect(), code === 1012 ? 100 + Math.random() * 900 : wait);
  }
}

let flashing: number | undefined;
function flashTitle(): void {
  const original = document.title;
  let n = 0;
  window.clearInterval(flashing);
  flashing = window.setInterval(() => {
    document.title = n % 2 ? original : "🔔 新会话 / New offer";
    if (++n > 9) {
      window.clearInterval(flashing);
      document.title = original;
    }
  }, 600);
}
