"""Numba kernels behind `repro_core.bpe`: the incremental BPE trainer and the batch piece encoder.

Nothing here knows about text, regexes or special tokens; `repro_core.bpe` owns those and keeps the
state arrays. Ids are int32 token ids, a pair key is `(left << 32) | right` as int64.

Trainer data structures (HF `BpeTrainer` design, arrays instead of hash maps of sets):

* the unique pre-tokens ("words") are laid end to end in `sym`; `nxt` / `prv` link the live symbols
  of a word (-1 at a word boundary); a merge keeps the left position and kills the right one;
* every distinct adjacent pair ever seen owns a slot: its weighted count (overlaps included, like HF)
  and a singly linked list of the positions where it was formed (`occ_*`, stale entries are skipped
  when the pair is merged);
* a lazy max-heap of (count, pair key, slot): an entry is valid iff its count equals the slot's
  current count; every slot whose count changes is pushed again, so stale entries are just dropped;
  ties go to the smaller (left, right) pair;
* token byte strings are identified by a 64-bit polynomial hash verified byte by byte, so that a
  merge whose bytes already exist as a token reuses that id (HF semantics for duplicate merges).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Indices into the int64 scalar-state array of the trainer.
SC_N_SLOTS = 0
SC_N_OCC = 1
SC_HEAP_SIZE = 2
SC_N_TOKENS = 3
SC_PAIR_SHIFT = 4
SC_TOKEN_SHIFT = 5
SC_N_MERGES = 6
SC_NEED = 7  # number of valid occurrences of the head pair when the kernel asked for more room
SC_SIZE = 8

STATUS_DONE = 0  # produced the requested number of merges
STATUS_EXHAUSTED = 1  # no pair left with count >= min_count
STATUS_GROW = 2  # arrays too small for the next merge: grow them and call again

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_HASH_BASE = np.uint64(0x100000001B3)  # odd multiplier of the token-bytes polynomial hash


@njit(cache=True)
def _bucket(key, shift):
    return np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(shift))


@njit(cache=True)
def _pair_lookup(keys, vals, shift, key):
    """Value stored for `key` in an open-addressing table, or -1."""
    mask = keys.size - 1
    i = _bucket(key, shift)
    while True:
        k = keys[i]
        if k == key:
            return vals[i]
        if k == -1:
            return -1
        i = (i + 1) & mask


@njit(cache=True)
def build_pair_table(left, right, table_bits):
    """Open-addressing table from pair key (left << 32 | right) to its row index in `left`/`right`."""
    size = 1 << table_bits
    shift = 64 - table_bits
    keys = np.full(size, -1, dtype=np.int64)
    vals = np.full(size, -1, dtype=np.int32)
    mask = size - 1
    for row in range(left.size):
        key = (np.int64(left[row]) << 32) | np.int64(right[row])
        i = _bucket(key, shift)
        while keys[i] != -1 and keys[i] != key:
            i = (i + 1) & mask
        if keys[i] == -1:  # first rule for a pair wins (a pair can only have one rule anyway)
            keys[i] = key
            vals[i] = row
    return keys, vals


# ------------------------------------------------------------------------------------------------
# trainer
# ------------------------------------------------------------------------------------------------


@njit(cache=True)
def _heap_better(c1, k1, c2, k2):
    return c1 > c2 or (c1 == c2 and k1 < k2)


@njit(cache=True)
def _heap_push(h_cnt, h_key, h_slot, size, cnt, key, slot):
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if _heap_better(cnt, key, h_cnt[parent], h_key[parent]):
            h_cnt[i] = h_cnt[parent]
            h_key[i] = h_key[parent]
            h_slot[i] = h_slot[parent]
            i = parent
        else:
            break
    h_cnt[i] = cnt
    h_key[i] = key
    h_slot[i] = slot
    return size + 1


@njit(cache=True)
def _heap_pop(h_cnt, h_key, h_slot, size):
    size -= 1
    cnt = h_cnt[size]
    key = h_key[size]
    slot = h_slot[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _heap_better(
            h_cnt[child + 1], h_key[child + 1], h_cnt[child], h_key[child]
        ):
            child += 1
        if _heap_better(h_cnt[child], h_key[child], cnt, key):
            h_cnt[i] = h_cnt[child]
            h_key[i] = h_key[child]
            h_slot[i] = h_slot[child]
            i = child
        else:
            break
    if size > 0:
        h_cnt[i] = cnt
        h_key[i] = key
        h_slot[i] = slot
    return size


@njit(cache=True)
def _slot_of(pkeys, pvals, sc, slot_a, slot_b, slot_cnt, slot_head, slot_mark, a, b, create):
    """Slot of pair (a, b); creates it when `create` (the caller guarantees room)."""
    key = (np.int64(a) << 32) | np.int64(b)
    shift = sc[SC_PAIR_SHIFT]
    mask = pkeys.size - 1
    i = _bucket(key, shift)
    while True:
        k = pkeys[i]
        if k == key:
            return pvals[i]
        if k == -1:
            break
        i = (i + 1) & mask
    if not create:
        return -1
    s = sc[SC_N_SLOTS]
    sc[SC_N_SLOTS] = s + 1
    pkeys[i] = key
    pvals[i] = s
    slot_a[s] = a
    slot_b[s] = b
    slot_cnt[s] = 0
    slot_head[s] = -1
    slot_mark[s] = -1
    return s


@njit(cache=True)
def rehash_pairs(slot_a, slot_b, n_slots, table_bits):
    """Pair table of a larger size for the existing slots (used when the trainer grows)."""
    size = 1 << table_bits
    shift = 64 - table_bits
    keys = np.full(size, -1, dtype=np.int64)
    vals = np.full(size, -1, dtype=np.int32)
    mask = size - 1
    for s in range(n_slots):
        key = (np.int64(slot_a[s]) << 32) | np.int64(slot_b[s])
        i = _bucket(key, shift)
        while keys[i] != -1:
            i = (i + 1) & mask
        keys[i] = key
        vals[i] = s
    return keys, vals


@njit(cache=True)
def _expand_bytes(t, tok_left, tok_right, tok_len, out):
    """Write the byte-level symbols (ids < first merged id) of token t into out[:tok_len[t]]."""
    stack = np.empty(tok_len[t] + 1, dtype=np.int64)
    depth = 0
    stack[0] = t
    depth = 1
    n = 0
    while depth > 0:
        depth -= 1
        x = stack[depth]
        if tok_left[x] < 0:
            out[n] = x
            n += 1
        else:
            stack[depth] = tok_right[x]
            stack[depth + 1] = tok_left[x]
            depth += 2
    return n


@njit(cache=True)
def _same_bytes(t, a, b, tok_left, tok_right, tok_len):
    buf_t = np.empty(tok_len[t], dtype=np.int64)
    buf_ab = np.empty(tok_len[t], dtype=np.int64)
    _expand_bytes(t, tok_left, tok_right, tok_len, buf_t)
    na = _expand_bytes(a, tok_left, tok_right, tok_len, buf_ab)
    _expand_bytes(b, tok_left, tok_right, tok_len, buf_ab[na:])
    for i in range(buf_t.size):
        if buf_t[i] != buf_ab[i]:
            return False
    return True


@njit(cache=True)
def _token_insert(tvals, shift, tok_hash, t):
    mask = tvals.size - 1
    i = _bucket(np.int64(tok_hash[t]), shift)
    while tvals[i] != -1:
        i = (i + 1) & mask
    tvals[i] = t


@njit(cache=True)
def _token_find(tvals, shift, tok_hash, tok_len, tok_left, tok_right, h, length, a, b):
    """Existing token whose bytes equal bytes(a) + bytes(b), or -1."""
    mask = tvals.size - 1
    i = _bucket(np.int64(h), shift)
    while True:
        t = tvals[i]
        if t == -1:
            return -1
        if (
            tok_hash[t] == h
            and tok_len[t] == length
            and _same_bytes(t, a, b, tok_left, tok_right, tok_len)
        ):
            return t
        i = (i + 1) & mask


@njit(cache=True)
def train_init(
    sym,
    word_start,
    word_count,
    n_base,
    nxt,
    prv,
    word_of,
    pkeys,
    pvals,
    slot_a,
    slot_b,
    slot_cnt,
    slot_head,
    slot_mark,
    occ_pos,
    occ_next,
    h_cnt,
    h_key,
    h_slot,
    tok_left,
    tok_right,
    tok_len,
    tok_hash,
    tok_pow,
    tok_freq,
    tvals,
    sc,
):
    """Link the words, count all adjacent pairs, fill the heap and the byte tokens.

    `sym` holds the (tie-break-ordered) byte ids 0..255 of all unique words end to end; word w is
    sym[word_start[w]:word_start[w+1]] and occurs word_count[w] times. Ids 256..n_base-1 are special
    tokens (never in a word). Capacities are set by the caller (see `repro_core.bpe.BpeTrainer`).
    """
    n_words = word_count.size
    for t in range(256):
        tok_left[t] = -1
        tok_right[t] = -1
        tok_len[t] = 1
        tok_hash[t] = np.uint64(t + 1)
        tok_pow[t] = _HASH_BASE
        _token_insert(tvals, sc[SC_TOKEN_SHIFT], tok_hash, t)
    for t in range(256, n_base):
        tok_left[t] = -1
        tok_right[t] = -1
        tok_len[t] = 0
    sc[SC_N_TOKENS] = n_base
    for w in range(n_words):
        start = word_start[w]
        end = word_start[w + 1]
        c = word_count[w]
        for i in range(start, end):
            word_of[i] = w
            nxt[i] = i + 1 if i + 1 < end else -1
            prv[i] = i - 1 if i > start else -1
            tok_freq[sym[i]] += c
        for i in range(start, end - 1):
            s = _slot_of(
                pkeys,
                pvals,
                sc,
                slot_a,
                slot_b,
                slot_cnt,
                slot_head,
                slot_mark,
                sym[i],
                sym[i + 1],
                True,
            )
            slot_cnt[s] += c
            o = sc[SC_N_OCC]
            occ_pos[o] = i
            occ_next[o] = slot_head[s]
            slot_head[s] = o
            sc[SC_N_OCC] = o + 1
    size = 0
    for s in range(sc[SC_N_SLOTS]):
        if slot_cnt[s] > 0:
            key = (np.int64(slot_a[s]) << 32) | np.int64(slot_b[s])
            size = _heap_push(h_cnt, h_key, h_slot, size, slot_cnt[s], key, s)
    sc[SC_HEAP_SIZE] = size


@njit(cache=True)
def train_chunk(
    sym,
    nxt,
    prv,
    word_of,
    word_count,
    pkeys,
    pvals,
    slot_a,
    slot_b,
    slot_cnt,
    slot_head,
    slot_mark,
    occ_pos,
    occ_next,
    h_cnt,
    h_key,
    h_slot,
    tok_left,
    tok_right,
    tok_len,
    tok_hash,
    tok_pow,
    tok_freq,
    tvals,
    sc,
    positions,
    touched,
    max_merges,
    min_count,
    out_left,
    out_right,
    out_new,
    out_pair_count,
    out_applied,
):
    """Run up to `max_merges` merges; write one record per merge into out_*; return (n, status)."""
    produced = 0
    status = STATUS_DONE
    size = sc[SC_HEAP_SIZE]
    while produced < max_merges:
        # 1. the valid head of the lazy heap
        while size > 0 and slot_cnt[h_slot[0]] != h_cnt[0]:
            size = _heap_pop(h_cnt, h_key, h_slot, size)
        if size == 0 or h_cnt[0] < min_count:
            status = STATUS_EXHAUSTED
            break
        s = h_slot[0]
        count = h_cnt[0]
        a = slot_a[s]
        b = slot_b[s]
        # 2. live occurrences of (a, b); stale list entries are dropped here
        n_valid = 0
        o = slot_head[s]
        while o != -1:
            i = occ_pos[o]
            j = nxt[i]
            if sym[i] == a and j != -1 and sym[j] == b:
                positions[n_valid] = i
                n_valid += 1
            o = occ_next[o]
        # 3. room for the worst case of this merge (2 new pairs per application, 4 changed slots)
        if (
            sc[SC_N_OCC] + 2 * n_valid > occ_pos.size
            or sc[SC_N_SLOTS] + 2 * n_valid > slot_a.size
            or 2 * (sc[SC_N_SLOTS] + 2 * n_valid) > pkeys.size
            or size + 4 * n_valid + 1 > h_cnt.size
            or 4 * n_valid + 1 > touched.size
        ):
            sc[SC_NEED] = n_valid
            status = STATUS_GROW
            break
        size = _heap_pop(h_cnt, h_key, h_slot, size)
        # 4. the id of the merged token: an existing token with the same bytes, or a new one
        length = tok_len[a] + tok_len[b]
        h = tok_hash[a] * tok_pow[b] + tok_hash[b]
        t = _token_find(
            tvals, sc[SC_TOKEN_SHIFT], tok_hash, tok_len, tok_left, tok_right, h, length, a, b
        )
        if t == -1:
            t = sc[SC_N_TOKENS]
            sc[SC_N_TOKENS] = t + 1
            tok_left[t] = a
            tok_right[t] = b
            tok_len[t] = length
            tok_hash[t] = h
            tok_pow[t] = tok_pow[a] * tok_pow[b]
            _token_insert(tvals, sc[SC_TOKEN_SHIFT], tok_hash, t)
        # 5. apply left to right (positions only need sorting when a == b: overlaps)
        if a == b:
            positions[:n_valid] = np.sort(positions[:n_valid])
        merge_index = sc[SC_N_MERGES]
        n_touched = 0
        applied = 0
        for k in range(n_valid):
            i = positions[k]
            j = nxt[i]
            if sym[i] != a or j == -1 or sym[j] != b:
                continue  # consumed by the previous application (a == b)
            c = word_count[word_of[i]]
            p = prv[i]
            n = nxt[j]
            # The left and right neighbour updates below are written out twice on purpose: a
            # shared jitted helper (even inline='always') measured ~25% slower on this loop
            # (wikitext-2, 32K merges: 0.13 s vs 0.10 s).
            if p != -1:
                x = sym[p]
                s1 = _slot_of(
                    pkeys, pvals, sc, slot_a, slot_b, slot_cnt, slot_head, slot_mark, x, a, False
                )
                slot_cnt[s1] -= c
                if slot_mark[s1] != merge_index:
                    slot_mark[s1] = merge_index
                    touched[n_touched] = s1
                    n_touched += 1
                s2 = _slot_of(
                    pkeys, pvals, sc, slot_a, slot_b, slot_cnt, slot_head, slot_mark, x, t, True
                )
                slot_cnt[s2] += c
                oo = sc[SC_N_OCC]
                occ_pos[oo] = p
                occ_next[oo] = slot_head[s2]
                slot_head[s2] = oo
                sc[SC_N_OCC] = oo + 1
                if slot_mark[s2] != merge_index:
                    slot_mark[s2] = merge_index
                    touched[n_touched] = s2
                    n_touched += 1
            if n != -1:
                y = sym[n]
                s3 = _slot_of(
                    pkeys, pvals, sc, slot_a, slot_b, slot_cnt, slot_head, slot_mark, b, y, False
                )
                slot_cnt[s3] -= c
                if slot_mark[s3] != merge_index:
                    slot_mark[s3] = merge_index
                    touched[n_touched] = s3
                    n_touched += 1
                s4 = _slot_of(
                    pkeys, pvals, sc, slot_a, slot_b, slot_cnt, slot_head, slot_mark, t, y, True
                )
                slot_cnt[s4] += c
                oo = sc[SC_N_OCC]
                occ_pos[oo] = i
                occ_next[oo] = slot_head[s4]
                slot_head[s4] = oo
                sc[SC_N_OCC] = oo + 1
                if slot_mark[s4] != merge_index:
                    slot_mark[s4] = merge_index
                    touched[n_touched] = s4
                    n_touched += 1
            slot_cnt[s] -= c
            sym[i] = t
            sym[j] = -1
            nxt[i] = n
            if n != -1:
                prv[n] = i
            applied += c
        slot_head[s] = -1
        slot_mark[s] = merge_index
        touched[n_touched] = s
        n_touched += 1
        # 6. re-queue every pair whose count changed (older entries become stale)
        for k in range(n_touched):
            s5 = touched[k]
            if slot_cnt[s5] > 0:
                key = (np.int64(slot_a[s5]) << 32) | np.int64(slot_b[s5])
                size = _heap_push(h_cnt, h_key, h_slot, size, slot_cnt[s5], key, s5)
        tok_freq[t] += applied
        tok_freq[a] -= applied
        tok_freq[b] -= applied
        out_left[produced] = a
        out_right[produced] = b
        out_new[produced] = t
        out_pair_count[produced] = count
        out_applied[produced] = applied
        produced += 1
        sc[SC_N_MERGES] = merge_index + 1
    sc[SC_HEAP_SIZE] = size
    return produced, status


# ------------------------------------------------------------------------------------------------
# encoder
# ------------------------------------------------------------------------------------------------


@njit(cache=True)
def _minheap_push(heap, size, key):
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if key < heap[parent]:
            heap[i] = heap[parent]
            i = parent
        else:
            break
    heap[i] = key
    return size + 1


@njit(cache=True)
def _minheap_pop(heap, size):
    size -= 1
    last = heap[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] < last:
            heap[i] = heap[child]
            i = child
        else:
            break
    if size > 0:
        heap[i] = last
    return size


@njit(cache=True)
def piece_buffers(data, offsets, exp_offsets):
    """The longest piece and the output buffers of an encoder over pieces (shared by the BPE and
    LBPE kernels): ``out`` holds every piece's ids after expansion by ``exp_offsets`` (at most
    max expansion ids per byte), ``out_offsets`` their offsets. Returns (max_len, out, out_offsets)."""
    n_pieces = offsets.size - 1
    max_len = 1
    max_expand = 1
    for k in range(n_pieces):
        length = offsets[k + 1] - offsets[k]
        if length > max_len:
            max_len = length
    for t in range(exp_offsets.size - 1):
        e = exp_offsets[t + 1] - exp_offsets[t]
        if e > max_expand:
            max_expand = e
    out = np.empty(data.size * max_expand + 1, dtype=np.int32)
    out_offsets = np.empty(n_pieces + 1, dtype=np.int64)
    return max_len, out, out_offsets


@njit(cache=True)
def encode_pieces(data, offsets, pkeys, pvals, pshift, rule_rank, rule_new, exp_offsets, exp_ids):
    """BPE-encode many byte strings ("pieces") at once.

    data[offsets[k]:offsets[k+1]] is piece k. A rule row r says: adjacent (left, right) whose pair
    key maps to r in (pkeys, pvals) becomes rule_new[r] with priority rule_rank[r] (lower first,
    leftmost first on ties). With merge rules and rank = merge index this is HF `tokenizers`
    (`word.rs::merge_all`); with all (x, y) whose bytes concatenate to a token and rank = token id
    it is tiktoken. Each final id t is written as exp_ids[exp_offsets[t]:exp_offsets[t+1]] (an
    identity table, or e.g. Scaffold-BPE's demolition into compact model ids).

    Returns (ids, ids_offsets): the output of piece k is ids[ids_offsets[k]:ids_offsets[k+1]].
    """
    n_pieces = offsets.size - 1
    max_len, out, out_offsets = piece_buffers(data, offsets, exp_offsets)
    sym = np.empty(max_len, dtype=np.int32)
    nxt = np.empty(max_len, dtype=np.int64)
    prv = np.empty(max_len, dtype=np.int64)
    # at most (len - 1) initial entries + 2 per merge, (len - 1) merges: < 3 len
    heap = np.empty(3 * max_len + 3, dtype=np.int64)
    n_out = 0
    out_offsets[0] = 0
    for k in range(n_pieces):
        start = offsets[k]
        length = offsets[k + 1] - start
        for i in range(length):
            sym[i] = data[start + i]
            nxt[i] = i + 1 if i + 1 < length else -1
            prv[i] = i - 1
        size = 0
        for i in range(length - 1):
            r = _pair_lookup(pkeys, pvals, pshift, (np.int64(sym[i]) << 32) | np.int64(sym[i + 1]))
            if r != -1:
                size = _minheap_push(heap, size, (rule_rank[r] << 32) | i)
        while size > 0:
            top = heap[0]
            size = _minheap_pop(heap, size)
            rank = top >> 32
            i = top & 0xFFFFFFFF
            if sym[i] < 0:
                continue
            j = nxt[i]
            if j == -1:
                continue
            r = _pair_lookup(pkeys, pvals, pshift, (np.int64(sym[i]) << 32) | np.int64(sym[j]))
            if r == -1 or rule_rank[r] != rank:
                continue  # stale entry: the pair at i changed since it was pushed
            sym[i] = rule_new[r]
            sym[j] = -1
            n = nxt[j]
            nxt[i] = n
            if n != -1:
                prv[n] = i
            p = prv[i]
            if p != -1:
                r2 = _pair_lookup(pkeys, pvals, pshift, (np.int64(sym[p]) << 32) | np.int64(sym[i]))
                if r2 != -1:
                    size = _minheap_push(heap, size, (rule_rank[r2] << 32) | p)
            if n != -1:
                r3 = _pair_lookup(pkeys, pvals, pshift, (np.int64(sym[i]) << 32) | np.int64(sym[n]))
                if r3 != -1:
                    size = _minheap_push(heap, size, (rule_rank[r3] << 32) | i)
        i = 0 if length > 0 else -1
        while i != -1:
            t = sym[i]
            for e in range(exp_offsets[t], exp_offsets[t + 1]):
                out[n_out] = exp_ids[e]
                n_out += 1
            i = nxt[i]
        out_offsets[k + 1] = n_out
    return out[:n_out].copy(), out_offsets
