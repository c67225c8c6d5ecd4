// UI text in Chinese and English. Chinese is the default unless the shop's config or the agent chose English.
export type Lang = "zh" | "en";

const TEXT = {
  deskTitle: ["客服工作台", "Agent desk"],
  boardTitle: ["主管看板", "Supervisor board"],
  tenant: ["店铺", "Shop"],
  agent: ["客服账号", "Agent"],
  password: ["密码", "Password"],
  login: ["登录", "Log in"],
  logout: ["退出", "Log out"],
  language: ["语言", "Language"],
  status: ["状态", "Status"],
  available: ["在线", "Available"],
  busy: ["忙碌", "Busy"],
  away: ["离开", "Away"],
  wrap_up: ["整理中", "Wrap-up"],
  offline: ["离线", "Offline"],
  offers: ["新会话邀请", "Offers"],
  accept: ["接受", "Accept"],
  decline: ["拒绝", "Decline"],
  declineReason: ["拒绝原因", "Decline reason"],
  secondsLeft: ["秒后过期", "s left"],
  conversations: ["会话", "Conversations"],
  noConversations: ["暂无会话", "No conversations"],
  waiting: ["等待", "waiting"],
  reply: ["回复", "Reply"],
  send: ["发送", "Send"],
  quickReplies: ["快捷短语（输入 / 搜索）", "Quick replies (type / to search)"],
  close: ["结束会话", "Close"],
  wrapUpCode: ["小结代码", "Wrap-up code"],
  chooseCode: ["请选择", "Choose"],
  transfer: ["转接", "Transfer"],
  toAgent: ["转给客服", "To agent"],
  toGroup: ["转给技能组", "To group"],
  note: ["转接备注", "Note for the next agent"],
  transferNote: ["转接备注", "Transfer note"],
  history: ["历史会话", "Earlier conversations"],
  noHistory: ["无历史会话", "No earlier conversations"],
  order: ["订单", "Order"],
  orderStatus: ["订单状态", "Order status"],
  // An order card's own status, shown but never used for routing (docs/chat-widget.md, "Facts routing trusts").
  unverified: ["买家卡片，未核实", "buyer's card, unverified"],
  dispute: ["维权", "Dispute"],
  platform: ["平台", "Platform"],
  tier: ["会员等级", "Tier"],
  offlineBanner: ["网络已断开，正在重连…", "Offline — reconnecting…"],
  superseded: ["您已在其他窗口或设备登录，本窗口已停止。", "You signed in elsewhere; this window stopped."],
  sessionEnded: ["会话已结束（心跳超时），请重新登录。", "Your session ended (no heartbeat); please log in again."],
  expired: ["登录已过期，请重新登录。", "Your login expired; please log in again."],
  badLogin: ["店铺、账号或密码错误。", "Unknown shop, agent or password."],
  tooLong: ["内容过长：最多 {n} 个字符（当前 {m}）。", "Too long: at most {n} characters (now {m})."],
  notYours: ["会话 {c} 不属于您在本店铺的会话。", "Conversation {c} is not one of yours in this shop."],
  changedBy: ["由 {by} 修改：{why}", "changed by {by}: {why}"],
  typingSent: ["对方可见“正在输入”", "The customer sees you typing"],
  subject: ["主题", "Subject"],
  quoted: ["引用内容", "Quoted text"],
  bot: ["智能客服", "Bot"],
  transcript: ["通话转写", "Call transcript"],
  wrapRequired: ["请先选择小结代码", "Choose a wrap-up code first"],
  error: ["出错了", "Something went wrong"],
  token: ["主管令牌", "Supervisor token"],
  groups: ["技能组", "Skill groups"],
  longest: ["最长等待", "Longest wait"],
  serviceLevel: ["服务水平", "Service level"],
  estWait: ["预计等待", "Estimated wait"],
  occupancy: ["占用率", "Occupancy"],
  agents: ["客服", "Agents"],
  skills: ["技能等级", "Skills (level)"],
  load: ["负载", "Load"],
  current: ["当前会话", "Current conversations"],
  inStatus: ["状态时长", "Time in status"],
  surge: ["大促模式", "Surge profile"],
  activate: ["开启", "Switch on"],
  deactivate: ["关闭", "Switch off"],
  capacity: ["容量倍数", "Capacity factor"],
  apply: ["应用", "Apply"],
  monitor: ["旁听会话（只读）", "Monitor a conversation (read-only)"],
  open: ["打开", "Open"],
  arrivals: ["进线量", "Arrivals"],
  queueDepth: ["排队数", "Queue depth"],
  none: ["无", "none"],
  forbidden: ["该令牌无权查看店铺 {t}。", "This token may not see shop {t}."],
  unknownToken: ["令牌无效或已过期，请重新登录。", "Unknown or expired token; sign in again."],
  notFound: ["本店铺没有会话 {c}。", "Shop has no conversation {c}."],
  active: ["当前", "Active"],
  responseRate: ["{n}响应率", "{n} response rate"],
  avgResponse: ["平均响应时间", "Average response time"],
  firstResponse: ["首次响应", "First response"],
  responses: ["响应次数", "Responses"],
  today: ["今日", "today"],
  responseRateToday: ["响应率（今日）", "Response rate (today)"],
  myToday: ["我的今日", "My day"],
  abandoned: ["放弃", "abandoned"],
} as const;

export type TextKey = keyof typeof TEXT;

export function t(lang: Lang, key: TextKey, vars: Record<string, string | number> = {}): string {
  let text: string = TEXT[key][lang === "zh" ? 0 : 1];
  for (const [name, value] of Object.entries(vars)) text = text.replace(`{${name}}`, String(value));
  return text;
}

export function initialLang(): Lang {
  const chosen = localStorage.getItem("sb-lang");
  return chosen === "en" || chosen === "zh" ? chosen : "zh";
}

export function rememberLang(lang: Lang): void {
  localStorage.setItem("sb-lang", lang);
  document.documentElement.lang = lang;
}

export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/** "3分钟" / "3-min" for a target in seconds (Taobao's 3分钟响应率 at 180 s), "45秒" / "45 s" otherwise. */
export function targetName(lang: Lang, seconds: number): string {
  const s = Math.round(seconds);
  if (s % 60 === 0) return lang === "zh" ? `${s / 60}分钟` : `${s / 60}-min`;
  return lang === "zh" ? `${s}秒` : `${s} s`;
}

/** A share as a percentage ("—" before there is anything to share). */
export function percent(share: number | null | undefined): string {
  return share === null || share === undefined ? "—" : `${Math.round(share * 100)}%`;
}
