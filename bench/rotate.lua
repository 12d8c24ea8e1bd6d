-- wrk script: each request carries the next token of a pool file (one per line), so a pool
-- of distinct tokens defeats any cache. Usage: wrk ... -s rotate.lua URL -- TOKENS_FILE
local tokens = {}
local next_index = 1

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      tokens[#tokens + 1] = "Bearer " .. line
    end
  end
  -- Spread threads over the pool.
  next_index = (math.random(#tokens) % #tokens) + 1
end

function request()
  local header = tokens[next_index]
  next_index = next_index + 1
  if next_index > #tokens then
    next_index = 1
  end
  return wrk.format("GET", "/", { ["Authorization"] = header })
end
