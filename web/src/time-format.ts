/** Times as people read them in a chat: "09:41", "Today", "Yesterday", "Mon 12 Jan". */

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const weekday = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
});
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

const dayMs = 86_400_000;

function startOfDay(date: Date): number {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

export const clockTime = (date: Date): string => clock.format(date);
export const fullTime = (date: Date): string => full.format(date);
export const sameDay = (a: Date, b: Date): boolean => startOfDay(a) === startOfDay(b);

export function dayLabel(date: Date, now = new Date()): string {
  const days = Math.round((startOfDay(now) - startOfDay(date)) / dayMs);
  if (days === 0) return "Today";
  if (days === 1) return "Yesterday";
  return weekday.format(date);
}

/** "10:42" today, "Yesterday 10:42" or "Mon 12 Jan, 10:42" before. */
export function readTime(date: Date, now = new Date()): string {
  const day = dayLabel(date, now);
  return day === "Today" ? clockTime(date) : `${day}, ${clockTime(date)}`;
}
