import type { ReceiptChange } from "../../domain/model.js";

/**
 * Appends a batch to the tenant's stream atomically, after trimming what
 * left the retention window. Exact trimming (no `~`) so that the newest
 * trimmed id, kept in KEYS[2], is exactly the point before which resume
 * tokens can no longer be served; `max-deleted-entry-id` of XINFO does not
 * count trimmed entries. The doorbell carries the last id added.
 *
 * The oldest entry is looked at first: only when it has expired is the
 * newest expired one searched for. On Redis 7.0 that backward search
 * (XREVRANGE from the cutoff) walks the whole stream when no entry is older
 * than the cutoff, about 20 ms with 300,000 retained; when one is, it seeks.
 *
 * What the log announced lives beside it, one hash per message
 * (`…:m:<message>`: field `r:<reader>` per announced reader, `n` the highest
 * count) and per conversation (`…:h:<conversation>`: newest horizon per
 * reader), kept as long as the log: a receipt already announced appends
 * nothing, a count below the highest is raised to it (the entry's `n`
 * field), a horizon not after the newest appends nothing. A receipt's field
 * holds its entry id, so that a message's deletion (`d` set in its hash, once)
 * removes its receipt entries from the stream (XDEL) in the same script that
 * appends the deletion: a replay never shows them again, and a receipt of a
 * deleted message appends nothing. XDEL rather than skipping them on replay:
 * the entries are personal data the deletion must remove, and replays stay
 * one XRANGE without a look-up per entry. Their names are
 * built here under the stream's hash tag, so they live in its cluster slot.
 *
 * KEYS[1] stream, KEYS[2] trimmed-through id; ARGV[1] cutoff (ms),
 * ARGV[2] doorbell channel, ARGV[3] name prefix of the announced state,
 * ARGV[4] its lifetime (ms), then five per change: kind ('r' receipt, 'h'
 * horizon, 'd' deletion), message or conversation id (a deletion: its message
 * ids, one per line), reader id, count or horizon, payload.
 * Returns one id per change, nil for a change not appended.
 */
export const appendScript = `
local cutoff = tonumber(ARGV[1])
if cutoff > 0 then
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #oldest > 0 and tonumber(string.match(oldest[1][1], '^(%d+)-')) < cutoff then
    local expired = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1] .. '-0', '-', 'COUNT', 1)
    redis.call('SET', KEYS[2], expired[1][1])
    redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1] .. '-0')
  end
end
local ids = {}
local last = false
for i = 5, #ARGV, 5 do
  local id = false
  local value = tonumber(ARGV[i + 3])
  if ARGV[i] == 'r' then
    local state = ARGV[3] .. 'm:' .. ARGV[i + 1]
    if redis.call('HEXISTS', state, 'd') == 0
        and redis.call('HSETNX', state, 'r:' .. ARGV[i + 2], '1') == 1 then
      local count = math.max(tonumber(redis.call('HGET', state, 'n') or '0'), value)
      redis.call('HSET', state, 'n', count)
      redis.call('PEXPIRE', state, ARGV[4])
      id = redis.call('XADD', KEYS[1], '*', 'c', ARGV[i + 4], 'n', count)
      redis.call('HSET', state, 'r:' .. ARGV[i + 2], id)
    end
  elseif ARGV[i] == 'd' then
    local fresh = false
    for message in string.gmatch(ARGV[i + 1], '[^\\n]+') do
      local state = ARGV[3] .. 'm:' .. message
      if redis.call('HSETNX', state, 'd', '1') == 1 then
        fresh = true
        local fields = redis.call('HGETALL', state)
        for f = 1, #fields, 2 do
          if string.sub(fields[f], 1, 2) == 'r:' and fields[f + 1] ~= '1' then
            redis.call('XDEL', KEYS[1], fields[f + 1])
          end
        end
        redis.call('PEXPIRE', state, ARGV[4])
      end
    end
    if fresh then id = redis.call('XADD', KEYS[1], '*', 'c', ARGV[i + 4]) end
  else
    local state = ARGV[3] .. 'h:' .. ARGV[i + 1]
    local newest = redis.call('HGET', state, ARGV[i + 2])
    if not newest or tonumber(newest) < value then
      redis.call('HSET', state, ARGV[i + 2], ARGV[i + 3])
      redis.call('PEXPIRE', state, ARGV[4])
      id = redis.call('XADD', KEYS[1], '*', 'c', ARGV[i + 4])
    end
  end
  ids[#ids + 1] = id
  if id then last = id end
end
if last then redis.call('PUBLISH', ARGV[2], last) end
return ids
`;

/** The script's arguments of one change: its four before the payload, then the payload. */
export function appendArgs(change: ReceiptChange): [string, string, string, string, string] {
  return [...appendKeyArgs(change), JSON.stringify(change)];
}

/** The four arguments of a change before its payload (see appendScript). */
function appendKeyArgs(change: ReceiptChange): [string, string, string, string] {
  switch (change.kind) {
    case "receipt":
      return [
        "r",
        change.receipt.message.messageId,
        // A private read and a later shown one of the same reader are two announcements.
        change.private === true ? `p:${change.readerId}` : change.readerId,
        String(change.receipt.readCount),
      ];
    case "horizon":
      return ["h", change.conversationId, change.readerId, String(change.readUpTo)];
    case "deletion":
      // Ids have no control characters (validate.ts): a newline separates them.
      return ["d", change.messages.map((m) => m.messageId).join("\n"), "", "0"];
  }
}
