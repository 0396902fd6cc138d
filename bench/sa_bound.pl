#!/usr/bin/perl
# sa_bound.pl - the in-process SpamAssassin bound for bench/spam_bench.py:
# what checking costs when nothing is spawned and nothing is sent anywhere.
#
#   bench/sa_bound.pl [--procs N] [--out PREFIX] MANIFEST
#
# MANIFEST has one line per message, "HOME<TAB>FILE": the user's home (its
# Bayes data is HOME/.spamassassin) and the message.  Mail::SpamAssassin is
# loaded once (local tests only), compile_now, every message read into
# memory; then N children are forked (default: the number of cores), child
# k taking the users whose index mod N is k, each user's messages in a row,
# switching user as a mailprocd worker sets one up (signal_user_changed,
# learning to the journal).  Printed on stdout, one line:
#
#   checked=M spam=S seconds=T procs=N cpu=C
#
# T runs from the first fork to the last child's exit; C is the CPU
# seconds (user + system) the children used, loading excluded.  With
# --out, child k writes "INDEX IS_SPAM SCORE" lines (INDEX counts
# MANIFEST lines from 0) to PREFIX.k.
use strict;
use warnings;

use File::Temp ();
use Getopt::Long qw(GetOptions);
use POSIX qw(_exit);
use Time::HiRes qw(time);
use Mail::SpamAssassin;

sub cores {
	open(my $fh, '<', '/proc/cpuinfo') or return 1;
	my $n = grep { /^processor\s*:/ } <$fh>;
	return $n || 1;
}

my $procs = cores();
my $out;
GetOptions('procs=i' => \$procs, 'out=s' => \$out)
	or die "usage: sa_bound.pl [--procs N] [--out PREFIX] MANIFEST\n";
die "usage: sa_bound.pl [--procs N] [--out PREFIX] MANIFEST\n" if @ARGV != 1;
die "sa_bound.pl: --procs must be at least 1\n" if $procs < 1;

# Every message in memory, grouped by home in order of first appearance.
my (@homes, %msgs);
open(my $mf, '<', $ARGV[0]) or die "sa_bound.pl: $ARGV[0]: $!\n";
my $index = 0;
while (my $line = <$mf>) {
	chomp $line;
	next if $line eq '';
	my ($home, $file) = split /\t/, $line, 2;
	die "sa_bound.pl: $ARGV[0] line " . ($index + 1) . ": expected HOME<TAB>FILE\n"
		if !defined $file || $home !~ m{^/};
	open(my $fh, '<:raw', $file) or die "sa_bound.pl: $file: $!\n";
	my $text = do { local $/; <$fh> };
	close $fh;
	push @homes, $home if !$msgs{$home};
	push @{ $msgs{$home} }, [$index++, $text];
}
close $mf;
die "sa_bound.pl: $ARGV[0]: no messages\n" if !$index;

# Loaded and compiled once, with a throw-away HOME, as mailprocd's spawner
# does; the children inherit it by fork.
my $tmphome = File::Temp::tempdir('sa-bound-XXXXXX', TMPDIR => 1, CLEANUP => 1);
$ENV{HOME} = $tmphome;
my $sa = Mail::SpamAssassin->new({
	local_tests_only => 1,
	dont_copy_prefs => 1,
	require_rules => 1,
});
$sa->compile_now(0, 1);
delete $sa->{conf}{sed_path_cache};

sub child {
	my ($k) = @_;
	my $fh;
	if (defined $out) {
		open($fh, '>', "$out.$k") or die "sa_bound.pl: $out.$k: $!\n";
	}
	my $spam = 0;
	for (my $u = $k; $u < @homes; $u += $procs) {
		my $home = $homes[$u];
		$ENV{HOME} = $home;
		delete $sa->{conf}{sed_path_cache};
		$sa->signal_user_changed({ username => "u$u", user_dir => $home,
		                           userstate_dir => "$home/.spamassassin" });
		delete $sa->{conf}{sed_path_cache};
		$sa->init_learner({ learn_to_journal => 1 });
		for my $m (@{ $msgs{$home} }) {
			my $mail = $sa->parse(\$m->[1], 0);
			my $status = $sa->check($mail);
			my $is = $status->is_spam() ? 1 : 0;
			$spam += $is;
			printf $fh "%d %d %.1f\n", $m->[0], $is, $status->get_score() if $fh;
			$status->finish();
			$mail->finish();
		}
		$sa->finish_learner();
	}
	close $fh if $fh;
	return $spam;
}

# Each child reports its spam count on a pipe of its own.
my $start = time;
my @kids;
for my $k (0 .. $procs - 1) {
	pipe(my $r, my $w) or die "sa_bound.pl: pipe: $!\n";
	my $pid = fork();
	die "sa_bound.pl: fork: $!\n" if !defined $pid;
	if ($pid == 0) {
		close $r;
		my $spam = eval { child($k) };
		if (!defined $spam) {
			print STDERR "sa_bound.pl: child $k: $@";
			_exit(1);
		}
		print $w "$spam\n";
		close $w;
		_exit(0);
	}
	close $w;
	push @kids, [$pid, $r];
}
my ($spam, $failed) = (0, 0);
for my $kid (@kids) {
	my $line = readline($kid->[1]);
	waitpid($kid->[0], 0);
	if ($? != 0 || !defined $line) {
		$failed++;
		next;
	}
	$spam += $line;
}
my $seconds = time - $start;
my (undef, undef, undef, $cuser, $csys) = POSIX::times();
my $cpu = ($cuser + $csys) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
die "sa_bound.pl: $failed of $procs children failed\n" if $failed;
printf "checked=%d spam=%d seconds=%.3f procs=%d cpu=%.2f\n", $index, $spam, $seconds, $procs,
	$cpu;
$sa->finish();
