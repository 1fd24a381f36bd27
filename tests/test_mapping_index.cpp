// The inside->outside mapping index (MappingIndex) and the SessionTable
// around it: every entry found under its signature, chains that stay dense
// whatever the order of inserts and erases (so an insert below capacity never
// fails), and keys told apart by the mapping entry when signatures collide.
#include <algorithm>
#include <cerrno>
#include <map>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include <rte_byteorder.h>

#include "ephemera/mapping_index.hpp"
#include "ephemera/session_table.hpp"

namespace {

using ephemera::MappingIndex;
using ephemera::MappingKey;
using ephemera::SessionTable;

// find() with the predicate a SessionTable uses: the entry is the one asked for.
uint32_t find_index(const MappingIndex& ix, uint32_t sig, uint32_t wanted)
{
    return ix.find(sig, [&](uint32_t c) { return c == wanted; });
}

TEST(MappingIndex, EveryEntryIsFoundUnderItsSignature)
{
    MappingIndex ix(4096);
    std::mt19937 rng(7);
    std::vector<uint32_t> sigs(4096);
    for (uint32_t i = 0; i < sigs.size(); ++i) {
        sigs[i] = uint32_t(rng());
        ASSERT_TRUE(ix.insert(sigs[i], i));
    }
    EXPECT_EQ(ix.size(), 4096u);
    for (uint32_t i = 0; i < sigs.size(); ++i) EXPECT_EQ(find_index(ix, sigs[i], i), i);
    EXPECT_EQ(find_index(ix, sigs[0], 4096), MappingIndex::kNone);
}

TEST(MappingIndex, OneBucketChainsEveryEntryAndStillFindsThemAll)
{
    MappingIndex ix(100, SOCKET_ID_ANY, 1); // every signature lands in the one bucket
    for (uint32_t i = 0; i < 100; ++i) ASSERT_TRUE(ix.insert(i * 0x9e3779b9u, i)) << i;
    EXPECT_EQ(ix.overflow_in_use(), 12u); // 8 in the bucket, 92 in 12 overflow buckets
    for (uint32_t i = 0; i < 100; ++i) EXPECT_EQ(find_index(ix, i * 0x9e3779b9u, i), i);
}

TEST(MappingIndex, AnEmptiedOverflowBucketLeavesTheChain)
{
    MappingIndex ix(16, SOCKET_ID_ANY, 1);
    for (uint32_t i = 0; i < 9; ++i) ASSERT_TRUE(ix.insert(i, i));
    EXPECT_EQ(ix.overflow_in_use(), 1u);
    ASSERT_TRUE(ix.erase(3, 3)); // the last entry moves into its place
    EXPECT_EQ(ix.overflow_in_use(), 0u);
    for (uint32_t i = 0; i < 9; ++i) EXPECT_EQ(find_index(ix, i, i), i == 3 ? MappingIndex::kNone : i);
}

TEST(MappingIndex, InsertsBelowCapacityNeverFailWhateverTheOrderOfErases)
{
    // Two buckets and 64 entries: long chains, erased from anywhere in them.
    constexpr uint32_t kCapacity = 64;
    MappingIndex ix(kCapacity, SOCKET_ID_ANY, 2);
    std::mt19937 rng(11);
    std::map<uint32_t, uint32_t> live; // index -> signature
    std::vector<uint32_t> unused;
    for (uint32_t i = 0; i < kCapacity; ++i) unused.push_back(i);
    for (int step = 0; step < 20000; ++step) {
        const bool add = !unused.empty() && (live.empty() || rng() % 3 != 0);
        if (add) {
            const size_t pick = rng() % unused.size();
            const uint32_t index = unused[pick];
            unused.erase(unused.begin() + long(pick));
            const uint32_t sig = uint32_t(rng()) & 0x0003ffffu; // few tags: many collisions
            ASSERT_TRUE(ix.insert(sig, index)) << "step " << step << ", size " << ix.size();
            live[index] = sig;
        } else {
            auto it = std::next(live.begin(), long(rng() % live.size()));
            ASSERT_TRUE(ix.erase(it->second, it->first));
            EXPECT_FALSE(ix.erase(it->second, it->first));
            unused.push_back(it->first);
            live.erase(it);
        }
        ASSERT_EQ(ix.size(), live.size());
        ASSERT_LE(ix.overflow_in_use(), kCapacity / MappingIndex::kWays);
        if (step % 97 == 0) {
            for (const auto& [index, sig] : live) ASSERT_EQ(find_index(ix, sig, index), index) << "step " << step;
        }
    }
    for (uint32_t index : unused) EXPECT_EQ(ix.find(0, [&](uint32_t c) { return c == index; }), MappingIndex::kNone);
}

TEST(MappingIndex, AtCapacityAnInsertIsRefused)
{
    MappingIndex ix(8, SOCKET_ID_ANY, 1);
    for (uint32_t i = 0; i < 8; ++i) ASSERT_TRUE(ix.insert(i, i));
    EXPECT_FALSE(ix.insert(8, 8));
    ASSERT_TRUE(ix.erase(0, 0));
    EXPECT_TRUE(ix.insert(8, 8));
}

TEST(MappingIndex, TheCandidateIsTheFirstEntryOfTheOwnBucketWithTheTag)
{
    MappingIndex ix(64, SOCKET_ID_ANY, 4);
    const uint32_t sig = 0xabcd0001u; // bucket 1, tag 0xabcd
    EXPECT_EQ(ix.candidate(sig), MappingIndex::kNone);
    ASSERT_TRUE(ix.insert(0x12340001u, 5)); // same bucket, another tag
    EXPECT_EQ(ix.candidate(sig), MappingIndex::kNone);
    ASSERT_TRUE(ix.insert(sig, 9));
    EXPECT_EQ(ix.candidate(sig), 9u);
    EXPECT_EQ(ix.candidate(0xabcd0002u), MappingIndex::kNone); // same tag, another bucket
}

TEST(MappingIndex, ABucketCountThatIsNotAPowerOfTwoIsRefused)
{
    EXPECT_THROW(MappingIndex(64, SOCKET_ID_ANY, 3), std::invalid_argument);
}

// ------------------------------------------------------------ SessionTable

MappingKey key(uint32_t host, uint16_t port, ephemera::L4 l4 = ephemera::L4::Udp)
{
    return MappingKey{rte_cpu_to_be_32(0x64400000u + host), rte_cpu_to_be_16(port), uint8_t(l4)};
}

TEST(SessionTableMappings, TheSameKeyIsNotAddedTwice)
{
    SessionTable t(16, 16, 0, SOCKET_ID_ANY);
    const int32_t first = t.add_mapping(key(1, 1000));
    ASSERT_GE(first, 0);
    EXPECT_EQ(t.add_mapping(key(1, 1000)), -EEXIST);
    EXPECT_EQ(t.lookup(key(1, 1000)), first);
    EXPECT_EQ(t.mapping_count(), 1u);
}

TEST(SessionTableMappings, KeysDifferingOnlyInProtocolAreDifferentMappings)
{
    SessionTable t(16, 16, 0, SOCKET_ID_ANY);
    const int32_t udp = t.add_mapping(key(1, 1000, ephemera::L4::Udp));
    const int32_t tcp = t.add_mapping(key(1, 1000, ephemera::L4::Tcp));
    ASSERT_GE(udp, 0);
    ASSERT_GE(tcp, 0);
    EXPECT_NE(udp, tcp);
    EXPECT_EQ(t.lookup(key(1, 1000, ephemera::L4::Udp)), udp);
    EXPECT_EQ(t.lookup(key(1, 1000, ephemera::L4::Tcp)), tcp);
    EXPECT_LT(t.lookup(key(1, 1000, ephemera::L4::Icmp)), 0);
}

TEST(SessionTableMappings, AFullTableRefusesAndARemovalMakesRoom)
{
    SessionTable t(4, 16, 0, SOCKET_ID_ANY);
    std::vector<int32_t> index;
    for (uint16_t p = 0; p < 4; ++p) index.push_back(t.add_mapping(key(1, uint16_t(2000 + p))));
    for (int32_t i : index) ASSERT_GE(i, 0);
    std::vector<int32_t> sorted = index;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, (std::vector<int32_t>{0, 1, 2, 3})); // every slot of the array, once
    EXPECT_EQ(t.add_mapping(key(2, 2000)), -ENOSPC);
    t.remove_mapping(uint32_t(index[2]));
    EXPECT_LT(t.lookup(key(1, 2002)), 0);
    EXPECT_FALSE(t.mapping(uint32_t(index[2])).live);
    EXPECT_EQ(t.add_mapping(key(2, 2000)), index[2]); // the freed slot
    for (uint16_t p : {0, 1, 3}) EXPECT_EQ(t.lookup(key(1, uint16_t(2000 + p))), index[p]);
}

TEST(SessionTableMappings, ABulkLookupFindsEachPresentKeyAndMissesTheRest)
{
    SessionTable t(1024, 16, 0, SOCKET_ID_ANY);
    std::vector<MappingKey> keys;
    std::vector<int32_t> expected;
    for (uint32_t i = 0; i < 100; ++i) {
        keys.push_back(key(i % 7, uint16_t(3000 + i)));
        if (i % 3 == 0) {
            expected.push_back(-1); // never added
        } else {
            expected.push_back(t.add_mapping(keys.back()));
            ASSERT_GE(expected.back(), 0);
        }
    }
    std::vector<int32_t> found(keys.size());
    t.lookup_bulk(keys.data(), unsigned(keys.size()), found.data());
    for (size_t i = 0; i < keys.size(); ++i) {
        if (expected[i] < 0) EXPECT_LT(found[i], 0) << i;
        else EXPECT_EQ(found[i], expected[i]) << i;
    }
}

TEST(SessionTableMappings, AMillionMappingsAreEachFoundAndRemovedWithoutFailure)
{
    constexpr uint32_t kMappings = 1u << 20;
    SessionTable t(kMappings, 16, 0, SOCKET_ID_ANY);
    for (uint32_t i = 0; i < kMappings; ++i)
        ASSERT_GE(t.add_mapping(key(i >> 12, uint16_t(1024 + (i & 4095)))), 0) << i;
    EXPECT_EQ(t.add_mapping(key(0xffff, 1)), -ENOSPC);
    for (uint32_t i = 0; i < kMappings; i += 4099) {
        const int32_t at = t.lookup(key(i >> 12, uint16_t(1024 + (i & 4095))));
        ASSERT_GE(at, 0) << i;
        t.remove_mapping(uint32_t(at));
        EXPECT_LT(t.lookup(key(i >> 12, uint16_t(1024 + (i & 4095)))), 0);
    }
    EXPECT_EQ(t.mapping_count(), kMappings - (kMappings + 4098) / 4099);
}

} // namespace
